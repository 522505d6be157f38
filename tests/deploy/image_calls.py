"""The image smoke test's calls (`deploy/build-image.sh --smoke`): with the official SDKs, a
streamed call on each streaming endpoint and an embedding, against the image's gateway
pointed at the fake upstream. Prints one `smoke:` line per call; exits 1 on the first
that fails.

    python -m tests.deploy.image_calls http://127.0.0.1:PORT TOKEN
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import anthropic
import openai

MODEL, CLAUDE = "gpt-4.1-nano", "claude-haiku-4-5"
USER_TEXT = "Say hello to the gateway please"
MESSAGES = [{"role": "user", "content": USER_TEXT}]


async def chat(client: openai.AsyncOpenAI, _: anthropic.AsyncAnthropic) -> str:
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def completions(client: openai.AsyncOpenAI, _: anthropic.AsyncAnthropic) -> str:
    stream = await client.completions.create(model=MODEL, prompt=USER_TEXT, stream=True)
    return "".join([c.choices[0].text async for c in stream if c.choices])


async def responses(client: openai.AsyncOpenAI, _: anthropic.AsyncAnthropic) -> str:
    stream = await client.responses.create(model=MODEL, input=USER_TEXT, stream=True)
    done = [e.response.output_text async for e in stream if e.type == "response.completed"]
    return done[0] if done else ""


async def messages(_: openai.AsyncOpenAI, client: anthropic.AsyncAnthropic) -> str:
    async with client.messages.stream(model=CLAUDE, max_tokens=50, messages=MESSAGES) as stream:
        return "".join([piece async for piece in stream.text_stream])


async def embeddings(client: openai.AsyncOpenAI, _: anthropic.AsyncAnthropic) -> str:
    answer = await client.embeddings.create(model="text-embedding-3-small", input=USER_TEXT)
    return f"{len(answer.data[0].embedding)} dimensions"


CALLS: dict[str, Callable[[openai.AsyncOpenAI, anthropic.AsyncAnthropic], Awaitable[str]]] = {
    "streamed /v1/chat/completions": chat,
    "streamed /v1/completions": completions,
    "streamed /v1/responses": responses,
    "streamed /v1/messages": messages,
    "/v1/embeddings": embeddings,
}


async def main(url: str, token: str) -> int:
    openai_client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
    anthropic_client = anthropic.AsyncAnthropic(base_url=url, api_key=token, max_retries=0)
    for name, call in CALLS.items():
        try:
            answer = await call(openai_client, anthropic_client)
        except Exception as exc:
            print(f"smoke: {name} failed: {type(exc).__name__}: {exc}", flush=True)
            return 1
        if not answer:
            print(f"smoke: {name} answered nothing", flush=True)
            return 1
        print(f"smoke: {name} answered ({len(answer)} characters)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
