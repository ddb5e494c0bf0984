"""Answering backends behind one interface (base.py); one module per backend.

- `llama`: a GGUF model in this process (llama.cpp via xllamacpp) — the default when installed;
- `openai`: any OpenAI-compatible server;
- `extractive`: no LLM — a reader that picks the answer span from the packed passages.
The LLM is only ever called here, to write the answer.
"""
from .base import (ANSWER_INSTRUCTIONS, ANSWER_SCHEMA, CITATION, NOT_FOUND, AnswerStream, Backend, ChatBackend,
                   ChatResult, LLMError, OnToken, Reply, parse_reply)
from .factory import BACKENDS, make_backend, resolve

__all__ = [
    "ANSWER_INSTRUCTIONS", "ANSWER_SCHEMA", "BACKENDS", "CITATION", "NOT_FOUND", "AnswerStream", "Backend",
    "ChatBackend", "ChatResult", "LLMError", "OnToken", "Reply", "make_backend", "parse_reply", "resolve",
]
