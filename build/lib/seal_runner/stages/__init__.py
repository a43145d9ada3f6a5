"""seal_runner.stages"""
