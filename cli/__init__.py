"""lictor.cli"""
