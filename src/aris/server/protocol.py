"""OpenAI chat-completions wire types (the subset Aris serves), plus Aris's ``think`` extension."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "image_url", "input_text"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class JSONSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str = "output"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JSONSchemaSpec | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")  # llama.cpp's json_object + schema


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(default=None, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=512)
    stream: bool = False
    stream_options: dict[str, Any] | None = None  # {"include_usage": true}: a last chunk with usage
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    response_format: ResponseFormat | None = None
    think: bool = Field(
        default=False,
        description="Aris: MedGemma thinking mode; the thought comes back "
        "in reasoning_content, never in content.",
    )
    # OpenAI parameters Aris does not serve. They are read only to refuse them: a client that asks
    # for three choices or for tool calls must not get one plain answer as if it had been honoured.
    n: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    audio: Any = None
    modalities: list[Any] | None = None
    prediction: Any = None

    def unsupported(self) -> tuple[str, str] | None:
        """(param, why) for the first parameter asked for that this server does not honour."""
        if self.n not in (None, 1):
            return "n", "only n=1 is supported"
        if self.tools or self.functions or self.function_call not in (None, "none"):
            return ("tools" if self.tools else "functions"), "tool and function calling are not supported"
        if self.tool_choice not in (None, "none"):
            return "tool_choice", "tool calling is not supported"
        if self.logprobs or self.top_logprobs:
            return "logprobs", "log probabilities are not supported"
        if self.logit_bias:
            return "logit_bias", "logit_bias is not supported"
        if self.presence_penalty or self.frequency_penalty:
            return "presence_penalty", "presence and frequency penalties are not supported"
        if self.audio is not None or (self.modalities and list(self.modalities) != ["text"]):
            return "modalities", "only text output is supported"
        if self.prediction is not None:
            return "prediction", "predicted outputs are not supported"
        return None

    def json_schema(self) -> dict[str, Any] | None:
        rf = self.response_format
        if rf is None or rf.type == "text":
            return None
        if rf.type == "json_schema" and rf.json_schema and rf.json_schema.schema_:
            return rf.json_schema.schema_
        return rf.schema_ or {"type": "object"}
