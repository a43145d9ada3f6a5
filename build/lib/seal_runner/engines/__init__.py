"""seal_runner.engines"""
