"""Optional Nemotron risk call: send the prompt to an OpenAI-compatible server and validate its JSON answer."""

from __future__ import annotations

import json
import re
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CHAT_PATH = "/v1/chat/completions"
# Reasoning models may think aloud before answering; braces in that text are not the answer.
THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class RiskCallError(RuntimeError):
    """The risk model gave no usable answer (unreachable, slow, HTTP error, non-JSON or off-schema)."""


class RiskAssessment(BaseModel):
    """The answer the prompt asks for."""

    model_config = ConfigDict(extra="ignore")

    risk_score: int = Field(ge=0, le=100)
    risk_level: Literal["low", "medium", "high", "critical"]
    summary: str
    reasoning: str

    @field_validator("risk_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def chat_url(url: str) -> str:
    """The chat-completions endpoint for a server base URL (a full endpoint URL is kept as given)."""
    url = url.rstrip("/")
    if url.endswith(CHAT_PATH):
        return url
    return url[: -len("/v1")] + CHAT_PATH if url.endswith("/v1") else url + CHAT_PATH


def extract_json_object(answer: str) -> dict:
    """The answer's JSON object: a fenced block if there is one, else the last object holding risk_score."""
    text = THINKING.sub("", answer)
    for block in FENCED.findall(text):
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    found: list[dict] = []
    for start in (i for i, char in enumerate(text) if char == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    with_score = [value for value in found if "risk_score" in value]
    if with_score or found:
        return (with_score or found)[-1]
    raise RiskCallError(f"answer holds no JSON object: {answer[:200]!r}")


def assess_risk(prompt: str, url: str, *, model: str, timeout: float) -> RiskAssessment:
    """Ask the model at `url` to assess the prompt; RiskCallError names what went wrong."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0.0}
    endpoint = chat_url(url)
    try:
        response = httpx.post(endpoint, json=body, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise RiskCallError(f"risk model at {endpoint} did not answer within {timeout} s") from exc
    except httpx.HTTPError as exc:
        raise RiskCallError(f"risk model at {endpoint} unreachable: {exc}") from exc
    if response.status_code != 200:
        raise RiskCallError(f"risk model answered HTTP {response.status_code}: {response.text[:200]!r}")
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RiskCallError(f"not a chat-completions response: {response.text[:200]!r}") from exc
    if not isinstance(content, str):
        raise RiskCallError(f"chat-completions message has no text content: {content!r}")
    try:
        return RiskAssessment.model_validate(extract_json_object(content))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RiskCallError(f"risk answer does not match the schema: {problems}") from exc
