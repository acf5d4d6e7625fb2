"""lictor.server"""
