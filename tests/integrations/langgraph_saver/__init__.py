"""The LangGraph checkpointer's tests: a package, so that its conftest and modules never shadow tests/' own."""
