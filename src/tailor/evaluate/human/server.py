"""The rating page: FastAPI serving plain HTML forms (no script), one item at a time per rater."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from tailor.errors import TailorError
from tailor.evaluate.human.results import study_results
from tailor.evaluate.human.store import (LIKERT, Study, connect, from_shown, get_item, get_study, items, list_studies,
                                         next_item, save_ratings, shown_questions)
from tailor.page import document, esc, fmt_interval, table

LABELS = {1: "1 poor", 2: "2", 3: "3", 4: "4", 5: "5 excellent"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(document(title, [body]), status_code=status)


def _likert(field: str, legend: str) -> str:
    radios = "".join(f"<label><input type='radio' name='{field}' id='{field}-{v}' value='{v}' required> "
                     f"{LABELS[v]}</label> " for v in LIKERT)
    return f"<fieldset><legend>{esc(legend)}</legend>{radios}</fieldset>"


def _item_form(study: Study, item, rater: str, position: int, total: int) -> str:
    out = [f"<h1>{esc(study.name)}</h1><p class='dim'>Rater {esc(rater)} · item {position} of {total}</p>",
           f"<h2>Prompt</h2><pre>{esc(item.prompt)}</pre>"]
    if item.reference:
        out.append(f"<h3>Reference answer</h3><pre>{esc(item.reference)}</pre>")
    out.append(f"<form method='post' action='/studies/{quote(study.name)}/items/{item.id}'>"
               f"<input type='hidden' name='rater' value='{esc(rater)}'>")
    if study.kind == "rate":
        out.append(f"<h2>Response</h2><pre id='response'>{esc(item.shown_a)}</pre>")
        out += [_likert(c, c) for c in study.criteria]
    else:
        for side, text in (("A", item.shown_a), ("B", item.shown_b)):
            out.append(f"<h2>Response {side}</h2><pre id='response-{side}'>{esc(text)}</pre>")
            out += [_likert(f"{c}_{side}", f"{c} of response {side}") for c in study.criteria]
        if study.winner:
            out.append("<fieldset><legend>Which response is better?</legend>" + "".join(
                f"<label><input type='radio' name='winner' id='winner-{v}' value='{v}' required> {v}</label> "
                for v in ("A", "B", "tie")) + "</fieldset>")
    out.append("<p><button type='submit' id='submit'>Save and next</button></p></form>")
    return "".join(out)


def results_html(res: dict) -> str:
    """A study's aggregates as HTML."""
    conf = f"{res['confidence']:.0%}"
    out = (f"<h1>Results: {esc(res['study'])}</h1><p>{res['ratings']} ratings from {res['raters']} rater(s); "
           f"intervals are {conf} bootstrap intervals over items.</p>")
    if res["scores"]:
        out += table(["criterion", "run", "mean (1-5)", "interval", "ratings", "alpha (ordinal)", "kappa (quadratic)"],
                     [[s["criterion"], s["side"] or "a", s["mean"], fmt_interval(s["interval"]), s["ratings"],
                       s["alpha"], s["kappa"]] for s in res["scores"]])
    if "winner" in res:
        w = res["winner"]
        out += ("<h2>Winner</h2>" + table(["a wins", "b wins", "ties", "win rate of a", "interval", "alpha (nominal)",
                                           "kappa"],
                                          [[w["counts"]["a"], w["counts"]["b"], w["counts"]["tie"], w["win_rate_a"],
                                            fmt_interval(w["interval_a"]), w["alpha"], w["kappa"]]]))
    runs = f"a: {esc(res['run_a'])}" + (f"<br>b: {esc(res['run_b'])}" if res["run_b"] else "")
    return out + f"<p class='dim'>{runs}</p>"


def create_app(db: Path) -> FastAPI:
    """The rating app over one SQLite database of studies."""
    app = FastAPI(title="Tailor human evaluation", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(TailorError)
    async def _error(request: Request, exc: TailorError) -> HTMLResponse:
        return _page("error", f"<h1>Cannot do that</h1><p id='error'>{esc(exc)}</p>", 400)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        with connect(db) as con:
            rows = list_studies(con)
        links = "".join(f"<li><a href='/studies/{quote(s['name'])}'>{esc(s['name'])}</a> ({s['kind']}, {s['items']} "
                        f"items)</li>" for s in rows)
        return _page("studies", f"<h1>Studies</h1><ul>{links or '<li>none yet</li>'}</ul>")

    @app.get("/studies/{name}", response_class=HTMLResponse)
    def start(name: str) -> HTMLResponse:
        with connect(db) as con:
            study = get_study(con, name)
        return _page(name, f"<h1>{esc(study.name)}</h1><p>Rate each response on a scale of 1 (poor) to 5 "
                           "(excellent). The responses are shown in random order.</p>"
                           f"<form method='get' action='/studies/{quote(name)}/next'><label>Your name "
                           "<input name='rater' id='rater' required maxlength='64'></label> "
                           "<button type='submit' id='start'>Start</button></form>")

    @app.get("/studies/{name}/next", response_model=None)
    def next_for(name: str, rater: str = "") -> RedirectResponse | HTMLResponse:
        if not rater.strip():
            raise TailorError("rater: a name of 1 to 64 characters is required")
        with connect(db) as con:
            item = next_item(con, get_study(con, name), rater.strip())
        if item is None:
            return _page("done", f"<h1 id='done'>Thank you, {esc(rater)}</h1><p>Every item of {esc(name)} is rated.</p>")
        return RedirectResponse(f"/studies/{quote(name)}/items/{item.id}?rater={quote(rater.strip())}", 303)

    @app.get("/studies/{name}/items/{item_id}", response_class=HTMLResponse)
    def show(name: str, item_id: int, rater: str = "") -> HTMLResponse:
        if not rater.strip():
            raise TailorError("rater: a name of 1 to 64 characters is required")
        with connect(db) as con:
            study = get_study(con, name)
            every = items(con, name)
            item = get_item(con, name, item_id)
        if item is None:
            raise TailorError(f"item {item_id} is not in study {name!r}")
        return _page(name, _item_form(study, item, rater.strip(), item.position + 1, len(every)))

    @app.post("/studies/{name}/items/{item_id}")
    async def rate(name: str, item_id: int, request: Request) -> RedirectResponse:
        form = dict(await request.form())
        rater = str(form.pop("rater", "")).strip()
        with connect(db) as con:
            study = get_study(con, name)
            item = get_item(con, name, item_id)
            if item is None:
                raise TailorError(f"item {item_id} is not in study {name!r}")
            missing = [q for q in shown_questions(study) if not str(form.get(q, "")).strip()]
            if missing:
                raise TailorError(f"item {item_id}: answer every question; missing: {', '.join(missing)}")
            answers = from_shown(study, item, {k: str(v) for k, v in form.items()})
            save_ratings(con, study, item_id, rater, answers, "web", f"item {item_id}")
        return RedirectResponse(f"/studies/{quote(name)}/next?rater={quote(rater)}", 303)

    @app.get("/studies/{name}/results", response_model=None)
    def results(name: str, format: str = "html") -> HTMLResponse | JSONResponse:
        with connect(db) as con:
            res = study_results(con, name)
        if format == "json":
            return JSONResponse(res)
        return _page(f"{name} results", results_html(res))

    return app


def serve(db: Path, host: str = "127.0.0.1", port: int = 8100) -> None:
    """Serve the rating pages until interrupted."""
    import uvicorn

    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")
