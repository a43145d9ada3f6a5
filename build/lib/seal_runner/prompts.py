"""Prompt text for self-edits and no-context QA, and chat formatting for chat models."""

from __future__ import annotations

QA_TEMPLATE = "Let's answer a question directly and concisely.\nQuestion: {question}\nAnswer:\n"


def selfedit_prompt(template: str, instruction: str, header: str, title: str, context: str) -> str:
    return template.format(instruction=instruction, header=header, title=title, context=context)


def qa_prompt(question: str, title: str, topic_prefix: bool = True) -> str:
    """The paper's QA prompt; the question carries "Topic: {title}" since the passage is absent."""
    return QA_TEMPLATE.format(question=f"Topic: {title}\n{question}" if topic_prefix else question)


class PromptFormatter:
    """Chat models see a user turn through their own chat template; base models the raw text."""

    def __init__(self, tokenizer, chat: bool) -> None:
        self.tokenizer = tokenizer
        self.chat = chat and getattr(tokenizer, "chat_template", None) is not None

    def __call__(self, text: str) -> str:
        if not self.chat:
            return text
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
