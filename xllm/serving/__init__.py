"""`xllm serve`: an OpenAI-compatible server for every modality.

One module per idea: `app.py` (routes, the path of a request), `settings.py` (request fields),
`messages.py` (content parts -> the processor's conversation), `media.py` (where URLs may lead, limits on
what they hold), `batching.py` (the scheduler), `streams.py` (per-request streams out of one batch),
`limits.py`, `errors.py`, `background.py` (serve on a free local port). Needs the `serve` extra
(fastapi, uvicorn, openai).
"""
