"""The AutoGen adapters: ``adapter`` (AutoGen classic, ``aios.patch("autogen")``) and ``agentchat``
(AutoGen 0.4+, ``aios.patch("autogen_agentchat")``)."""
