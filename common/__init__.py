"""lictor.common"""
