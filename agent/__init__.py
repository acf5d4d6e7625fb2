"""lictor.agent"""
