"""Two decorators between Gradio and the package, kept out of app.py's layout.

`user_errors` turns any failure into a sentence for the visitor: a `Sam3VideoError`'s own, an
out-of-memory advice, or (for a bug) a short sentence while the details go to the server log only;
the server keeps serving. On the page the sentence is a toast and the page stays as it was (a
`gr.Error` would turn every output into an "Error" badge, over the frame, the table and the
inputs); an API client gets it as the call's error. It works for plain and generator handlers.
`gpu(duration)` is `spaces.GPU(duration=...)` on Hugging Face ZeroGPU (where a GPU is attached only
inside such calls; `duration` may be a callable sized per call) and does nothing elsewhere.
`one_call_key` and `mcp_tools` fit the app to Gradio's MCP server (see README, "Use it from an agent").
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import os
import time
import uuid
from typing import Collection

import gradio as gr

from ..config import ON_ZERO_GPU
from ..errors import OUT_OF_MEMORY_ADVICE, BadRequestError, Sam3VideoError, is_out_of_memory

log = logging.getLogger(__name__)


def gpu(duration_s):
    """`spaces.GPU(duration=duration_s)` on ZeroGPU (the function then runs in a forked worker
    process, its arguments and results pickled across); elsewhere the function itself."""
    if not ON_ZERO_GPU:
        return lambda fn: fn
    import spaces

    return spaces.GPU(duration=duration_s)


def sentence(err: Exception, action: str) -> str:
    """What a visitor is told when `action` failed with `err` (never a traceback, never a path)."""
    if isinstance(err, Sam3VideoError):
        return str(err)
    if is_out_of_memory(err):
        return f"Ran out of memory during {action}. {OUT_OF_MEMORY_ADVICE}"
    log.error("%s failed", action, exc_info=err)
    return (f"{action.capitalize()} failed unexpectedly ({type(err).__name__}); what you did before is kept. "
            "Try again, and if it fails again, report it with the server's log.")


def as_text(message: str) -> str:
    """A sentence as the HTML that Gradio's error toast renders (it renders gr.Error messages as
    sanitised HTML): our sentences quote what a visitor typed, and '<img ...>' typed must show as
    those characters, never become an element. API clients get the same escaped string."""
    return html.escape(message, quote=False)


def _user_error(err: Exception, action: str) -> gr.Error:
    """The gr.Error to raise for `err`: a handler's own gr.Error keeps its sentence, anything else
    gets one (`sentence`); either way HTML-escaped (`as_text`)."""
    from .gpucalls import refusal

    refused = refusal(err)
    if refused is not None:  # the platform's own words (no visitor's text in them), their links working
        return gr.Error(refused.message, title="ZeroGPU")
    if isinstance(err, gr.Error):
        err.message = as_text(str(err.message))
        return err
    return gr.Error(as_text(sentence(err, action)))


def _gradio_user(request: gr.Request | None) -> str | None:
    """Who the caller says it is: Gradio's page "app" in every queue request (seen with Gradio 6.31
    and Chromium), gradio_client "api", Gradio's MCP server "mcp" (it calls the app through its own
    gradio_client, whose "x-gradio-user: mcp" header wins over the one a call adds; gradio/mcp.py
    and gradio_client/client.py, 6.31); None when the caller says nothing (curl)."""
    if request is None:
        return None
    try:
        headers = {str(k).lower(): v for k, v in dict(request.headers).items()}
    except (AttributeError, TypeError):
        return None
    return headers.get("x-gradio-user")


def from_page(request: gr.Request | None) -> bool:
    """Whether a call comes from the app's own page in a browser, not from an API client (or an
    agent through the MCP server). A caller that says nothing (curl) counts as an API client: it
    gets the error, not a toast it cannot see."""
    return _gradio_user(request) == "app"


def visitor_key(request: gr.Request) -> str:
    """The visitor's workspace key: Gradio's session hash, which every event from a page or a
    client carries."""
    if request.session_hash is None:
        raise BadRequestError("This call came without a Gradio session. Call the app from its page or "
                              "through gradio_client.")
    return request.session_hash


def one_call_key(request: gr.Request) -> str:
    """The workspace key for a one-shot call: the caller's session (Gradio's session hash), except
    for a call from Gradio's MCP server, which sends every agent's calls through one gradio_client,
    so one session hash. Such a call gets a workspace of its own (swept after the session TTL like
    any API client's): agents neither see each other's files nor wait for each other's run."""
    if _gradio_user(request) == "mcp":
        return f"mcp-{uuid.uuid4().hex}"
    return visitor_key(request)


def mcp_tools(demo: gr.Blocks, endpoints: Collection[str]) -> dict:
    """`launch(app_kwargs=...)` under which Gradio's MCP server offers only `endpoints` (api names)
    as tools: its tool list and its calls, both read from `tool_to_endpoint`, which the server builds
    at launch from every public endpoint (Gradio 6.31 has no per-endpoint MCP switch; making an
    endpoint "undocumented" would also drop it from the API page). Set in the app's lifespan, so
    before the first request; the API page and gradio_client keep every endpoint."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        server = demo.mcp_server_obj
        if server is not None:
            server.tool_to_endpoint = {tool: endpoint for tool, endpoint in server.tool_to_endpoint.items()
                                       if endpoint.lstrip("/") in endpoints}
        yield

    return {"lifespan": lifespan}


def _request_of(args, kwargs) -> gr.Request | None:
    return next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)


def _failed(err: Exception, action: str, page: bool):
    """On the page: the sentence as a toast, and `gr.skip()` (every output keeps what it shows).
    Elsewhere: raise the gr.Error."""
    error = _user_error(err, action)
    if not page:
        raise error from None
    gr.Warning(error.message, title="Not done")
    return gr.skip()


def user_errors(fn):
    """Any exception -> a sentence (a gr.Error raised by the handler keeps its own), HTML-escaped
    (`as_text`): a toast on the page, every output left as it was; the call's error for an API
    client (`from_page`). The handler must take a `gr.Request`."""
    action = fn.__name__.replace("_", " ")
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:
                yield _failed(err, action, from_page(_request_of(args, kwargs)))

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            return _failed(err, action, from_page(_request_of(args, kwargs)))

    return wrapper


def sweep_cache(demo: gr.Blocks, age_s: float) -> int:
    """Delete the files in Gradio's cache created more than `age_s` ago, except the ones Gradio
    keeps on purpose (examples); return how many went.

    `delete_cache` does not cover everything: the files a handler returns to a Video or File
    output are copied into the cache but never tracked for deletion (seen with Gradio 6.31, see
    docs/reliability.md), so a public server's disk would fill with every visitor's results."""
    keep = set()
    for block in demo.blocks.values():
        keep |= {os.path.abspath(p) for p in getattr(block, "keep_in_cache", ())}
    limit = time.time() - age_s
    removed = 0
    for root, _, files in os.walk(demo.GRADIO_CACHE, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.path.abspath(path) not in keep and os.lstat(path).st_ctime < limit:
                    os.remove(path)
                    removed += 1
            except FileNotFoundError:  # gone already (Gradio's own sweep)
                pass
        if root != demo.GRADIO_CACHE and not os.listdir(root):
            try:
                os.rmdir(root)
            except OSError:  # a file arrived meanwhile
                pass
    return removed
