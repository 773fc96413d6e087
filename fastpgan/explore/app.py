"""The explorer's web app: a Starlette app whose routes render what the page's controls ask
for (:mod:`fastpgan.explore.session`), served on 127.0.0.1 by uvicorn. Both are the
optional extra ``explore``, imported only when the app is made, so that the commands run
without them and ``fastpgan explore`` can say how to install them.

Rendering runs in a worker thread, one request at a time; a request waiting for the model
when a newer one of the same kind arrives is dropped (204), so moving a slider on a CPU
renders its last position, not every one it passed.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

from fastpgan.explore.session import Explorer, Look, Picture, Superseded
from fastpgan.generate.project import PROJECTION_PICTURES

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

MAX_UPLOAD_BYTES = 64 << 20
"""The largest upload read (a photo): more is refused before it is held in memory."""


class UploadTooLargeError(ValueError):
    """An upload over MAX_UPLOAD_BYTES."""


class LatestOnly:
    """Runs one rendering at a time; a call of a channel is dropped (:class:`Superseded`)
    when a newer call of the same channel arrives while it waits, or while it renders
    where the rendering asks (between batches of a grid).

    "Newer" is the page's own order where it gives one (``client`` and ``order``): its
    requests travel over several connections and may reach the server in another order
    than it sent them, and the one it sent last is the one it shows. Calls without an
    order are ordered by arrival."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self._arrivals = itertools.count()
        self._latest: dict[tuple[str, str], int] = {}
        self._counting = threading.Lock()

    def run(self, channel: str, render: Callable[[Callable[[], bool]], Picture],
            client: str = "", order: int | None = None) -> Picture:
        """``render(wanted)`` under the lock, unless a newer call of ``channel`` (from the
        same ``client``, by its ``order``) came first; ``wanted()`` says whether it is
        still the newest."""
        key = (channel, client)
        with self._counting:
            ticket = next(self._arrivals) if order is None else order
            self._latest[key] = max(self._latest.get(key, ticket), ticket)

        def wanted() -> bool:
            return self._latest[key] == ticket

        with self.lock:
            if not wanted():
                raise Superseded
            return render(wanted)


def _look(request: Request) -> Look:
    q = request.query_params
    cutoff, class_index = q.get("cutoff", ""), q.get("class", "")
    return Look(truncation=_number(q.get("psi", "1"), "psi", float),
                cutoff=_number(cutoff, "cutoff", int) if cutoff else None,
                noise_mode=_choice(q.get("noise", "const"), "noise", ("const", "random", "none")),
                class_index=_number(class_index, "class", int) if class_index else None)


def _number(text: str, name: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {text!r}")
    return value


def _choice(text: str, name: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
    return text


def create_app(explorer: Explorer) -> Starlette:
    """The explorer's routes over ``explorer``:

    - ``/``: the page; ``/api/info``: the model and its controls;
    - ``/api/grid.png?seeds=0-15`` and ``/api/sample.png?seeds=0-15&index=3``;
    - ``/api/walk.png?a=3&b=7&steps=30&space=z&mode=slerp&frame=12`` and ``/api/walk.gif``
      (an end may be ``projection:N``);
    - ``/api/mix.png?row=1&col=4&layers=middle``;
    - ``POST /api/project?steps=200&space=w`` with the photo as the body, then
      ``/api/project/N`` (progress), ``/api/project/N/frame.png`` (the search's latest
      image), and what ``fastpgan project`` writes: ``/api/project/N/target.png``,
      ``projected.png`` and ``projection.gif``.

    Each picture takes psi, cutoff, noise and class, carries the command line that writes
    it in ``X-Fastpgan-Command``, and with ``download=1`` comes as a file. A bad request
    is answered 400 with ``{"error": what to do}``; a dropped one 204.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    gate = LatestOnly(explorer.lock)

    def respond(picture: Picture, download: bool) -> Response:
        headers = {"X-Fastpgan-Command": picture.command, "Cache-Control": "no-store"}
        if download:
            headers["Content-Disposition"] = f'attachment; filename="{picture.filename}"'
        return Response(picture.data, media_type=picture.media_type, headers=headers)

    def refuse(exc: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=status)

    def picture_route(channel: str,
                      make: Callable[[Request], Callable[[Callable[[], bool]], Picture]]):
        async def endpoint(request: Request) -> Response:
            try:
                render = make(request)
                q = request.query_params
                order = _number(q["order"], "order", int) if "order" in q else None
                picture = await run_in_threadpool(gate.run, channel, render,
                                                  q.get("client", ""), order)
            except Superseded:
                return Response(status_code=204)
            except (ValueError, KeyError) as exc:
                return refuse(exc)
            return respond(picture, request.query_params.get("download") == "1")
        return endpoint

    def walk_arguments(request: Request) -> tuple:
        q = request.query_params
        return ((q.get("a", "0"), q.get("b", "1")), _number(q.get("steps", "30"), "steps", int),
                _choice(q.get("space", "z"), "space", ("z", "w")),
                _choice(q.get("mode", "slerp"), "mode", ("slerp", "lerp")), _look(request))

    def grid(request: Request):
        seeds, look = request.query_params.get("seeds", "0-15"), _look(request)
        return lambda wanted: explorer.grid(seeds, look, wanted)

    def sample(request: Request):
        q = request.query_params
        seeds, index = q.get("seeds", "0-15"), _number(q.get("index", "0"), "index", int)
        look = _look(request)
        return lambda wanted: explorer.sample(seeds, index, look, wanted)

    def walk_png(request: Request):
        arguments = walk_arguments(request)
        frame = _number(request.query_params.get("frame", "0"), "frame", int)
        return lambda wanted: explorer.walk_frame(*arguments, frame)

    def walk_gif(request: Request):
        arguments = walk_arguments(request)
        return lambda wanted: explorer.walk_gif(*arguments)

    def mix(request: Request):
        q = request.query_params
        row, col = (_number(q.get(k, "0"), k, int) for k in ("row", "col"))
        layers, look = q.get("layers", "middle"), _look(request)
        return lambda wanted: explorer.style_mix(row, col, layers, look)

    def projection_picture(which: str):
        def make(request: Request):
            name = request.path_params["name"]
            return lambda wanted: explorer.projection_picture(name, which)
        return make

    async def page(request: Request) -> Response:
        return HTMLResponse(resources.files("fastpgan.explore").joinpath("page.html")
                            .read_text(encoding="utf-8"))

    async def info(request: Request) -> Response:
        return JSONResponse(explorer.info())

    async def start_projection(request: Request) -> Response:
        q = request.query_params
        try:
            photo = await _bounded_body(request)
            space = q.get("space") or None
            name = await run_in_threadpool(
                explorer.start_projection, photo,
                steps=_number(q.get("steps", "200"), "steps", int), space=space,
                loss=_choice(q.get("loss", "l2"), "loss", ("l2", "l1")),
                seed=_number(q.get("seed", "0"), "seed", int), look=_look(request))
        except UploadTooLargeError as exc:
            return refuse(exc, 413)
        except ValueError as exc:
            return refuse(exc)
        return JSONResponse({"name": name})

    async def projection_progress(request: Request) -> Response:
        job = explorer.projections.get(request.path_params["name"])
        if job is None:
            return refuse(ValueError(f"no projection {request.path_params['name']!r}"), 404)
        return JSONResponse({"step": job.step, "steps": job.steps, "space": job.space,
                             "losses": job.losses[:: max(1, len(job.losses) // 400)],
                             "loss": job.losses[-1] if job.losses else None,
                             "done": job.done, "error": job.error,
                             "command": (explorer.projection_command(
                                 request.path_params["name"], "photo.png")
                                 if job.result is not None else None)})

    async def projection_frame(request: Request) -> Response:
        job = explorer.projections.get(request.path_params["name"])
        if job is None or job.frame is None:
            return Response(status_code=204)
        return Response(job.frame, media_type="image/png", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", page), Route("/api/info", info),
        Route("/api/grid.png", picture_route("grid", grid)),
        Route("/api/sample.png", picture_route("sample", sample)),
        Route("/api/walk.png", picture_route("walk", walk_png)),
        Route("/api/walk.gif", picture_route("walk.gif", walk_gif)),
        Route("/api/mix.png", picture_route("mix", mix)),
        Route("/api/project", start_projection, methods=["POST"]),
        Route("/api/project/{name}", projection_progress),
        Route("/api/project/{name}/frame.png", projection_frame),
        *[Route(f"/api/project/{{name}}/{which}", picture_route(which, projection_picture(which)))
          for which in PROJECTION_PICTURES],
    ]
    return Starlette(routes=routes)


async def _bounded_body(request: Request) -> bytes:
    """The request's body, refused past MAX_UPLOAD_BYTES as it arrives."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise UploadTooLargeError(f"the upload is over {MAX_UPLOAD_BYTES >> 20} MiB: "
                                      f"upload a smaller picture")
        chunks.append(chunk)
    if not size:
        raise ValueError("the upload is empty: choose a picture to project")
    return b"".join(chunks)


def listening_socket(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:``port`` (0: any free port). ValueError, saying
    what to do, when the port is taken or not allowed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): another "
                         f"program has it; pick another with --port, or --port 0 for any "
                         f"free one") from None
    return sock


def require_web() -> None:
    """ValueError saying how to install the explore extra when Starlette or uvicorn is
    missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"fastpgan explore needs the explore extra ({exc.name} is missing): "
                         f'pip install -e ".[explore]" (or pip install starlette uvicorn)') \
            from None


def serve(explorer: Explorer, port: int, announce: Callable[[str], None] = print) -> None:
    """Serves the explorer on 127.0.0.1 until Ctrl-C; ``announce`` gets the address once
    the socket listens (a browser may connect from then on)."""
    import uvicorn

    sock = listening_socket(port)
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), log_level="warning",
                                           lifespan="off"))
    announce(f"http://127.0.0.1:{sock.getsockname()[1]}/")
    server.run(sockets=[sock])
