import os
import pty
import subprocess
import sys
import time

from tailor.spec import load_spec

CLI = [sys.executable, "-m", "tailor.cli"]
ENV = {**os.environ, "COLUMNS": "200"}


def tailor(*args, cwd=None):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=ENV, cwd=cwd)


def test_help_lists_commands():
    res = tailor("--help")
    assert res.returncode == 0
    for cmd in ("init", "spec", "run", "runs", "generate", "serve"):
        assert cmd in res.stdout


def test_user_error_is_one_message_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nproblem: {domain: d, task: t}\ndata:\n  sources: [{type: files, path: a.txt}]\nmodle: {}\n")
    res = tailor("spec", "check", str(bad))
    assert res.returncode == 2
    assert "bad.yaml:5: modle: unknown key (did you mean 'model'?)" in res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    res = tailor("--debug", "spec", "check", str(bad))
    assert "Traceback" in res.stderr


def test_run_with_missing_data_names_the_pattern(tmp_path, make_spec):
    spec = make_spec(data=False)
    res = tailor("run", str(spec), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2
    assert "data.sources[0].path: no files match" in res.stderr and "Traceback" not in res.stderr


def test_bad_stage_name(make_spec):
    res = tailor("run", str(make_spec()), "--until", "trian")
    assert res.returncode == 2 and "expected one of data, tokenizer" in res.stderr


def test_spec_show_prints_defaults(make_spec):
    res = tailor("spec", "show", str(make_spec()))
    assert res.returncode == 0 and "warmup_steps: 2" in res.stdout and "min_lr_ratio: 0.1" in res.stdout


def test_init_without_questions_writes_a_valid_spec(tmp_path):
    out = tmp_path / "s.yaml"
    (tmp_path / "faq").mkdir()
    (tmp_path / "faq" / "a.jsonl").write_text('{"q": "hi", "a": "hello"}\n')
    res = tailor("init", "--no-input", "--out", str(out), "--domain", "support", "--task", "answer faq",
                 "--data", "faq/*.jsonl", "--input-field", "q", "--output-field", "a",
                 "--target", "exact_match >= 0.9", "--target", "validation/loss <= 2", "--time-budget", "10m")
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert text.startswith("# Tailor spec") and "# who the model serves" in text
    spec = load_spec(out)
    assert spec.name == "answer-faq" and spec.data.fields.input == "q"
    assert [t.describe() for t in spec.problem.targets] == ["test/exact_match >= 0.9", "validation/loss <= 2"]
    assert spec.problem.constraints.time_budget == 600
    again = tailor("init", "--no-input", "--out", str(out), "--domain", "x", "--task", "y", "--data", "z")
    assert again.returncode == 2 and "exists; use --force" in again.stderr


def test_init_refuses_missing_answers_and_bad_targets(tmp_path):
    res = tailor("init", "--no-input", "--out", str(tmp_path / "s.yaml"), "--task", "t", "--data", "d")
    assert res.returncode == 2 and "--domain" in res.stderr
    (tmp_path / "d.txt").write_text("some text\n")
    res = tailor("init", "--no-input", "--out", str(tmp_path / "s.yaml"), "--domain", "d", "--task", "t",
                 "--data", "d.txt", "--target", "accuracy is high")
    assert res.returncode == 2 and "expected 'metric >= value'" in res.stderr


def test_init_refuses_a_data_path_that_matches_no_file(tmp_path):
    (tmp_path / "empty-folder").mkdir()
    for data in ("data/*.jsonl", "missing.csv", "empty-folder"):
        res = tailor("init", "--no-input", "--out", str(tmp_path / "s.yaml"), "--domain", "d", "--task", "t",
                     "--data", data)
        assert res.returncode == 2, res.stderr
        assert f"--data: no file matches {data!r} (relative to {tmp_path}" in " ".join(res.stderr.split())
        assert not (tmp_path / "s.yaml").exists()


def spec_data_path(spec_path) -> str:
    return load_spec(spec_path).data.sources[0].path


def test_init_asks_questions_on_a_terminal(tmp_path):
    out = tmp_path / "asked.yaml"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qa.csv").write_text("question,answer\nhi,hello\n")
    answers = ["hardware store support", "answer product questions", "text", "dta/*.csv", "data/*.csv", "question",
               "answer", "exact_match >= 0.95", "", "cpu", "5m", ""]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(CLI[0], CLI + ["init", "--out", str(out), "--name", "hw"], ENV)
    transcript = b""
    deadline = time.time() + 60
    for answer in answers:
        while not transcript.rstrip().endswith((b":", b"]:", b"):")):
            assert time.time() < deadline, transcript.decode(errors="replace")
            transcript += os.read(fd, 1024)
        os.write(fd, answer.encode() + b"\n")
        transcript += os.read(fd, 1024)  # the echo of our answer
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        transcript += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, transcript.decode(errors="replace")
    assert b"Domain (who the model serves)" in transcript
    assert b"no file matches 'dta/*.csv'" in transcript  # asked again, saying why
    assert spec_data_path(out).endswith("data/*.csv")
    spec = load_spec(out)
    assert spec.problem.domain == "hardware store support" and spec.problem.constraints.device == "cpu"
    assert spec.problem.targets[0].at_least == 0.95 and spec.data.fields.output == "answer"


def test_generate_from_a_run(finished_run):
    _, run_dir = finished_run
    res = tailor("generate", str(run_dir), "what colour is item 3", "--max-tokens", "3", "--json")
    assert res.returncode == 0, res.stderr
    assert '"completion_tokens"' in res.stdout
    res = tailor("generate", str(run_dir.parent), "x")
    assert res.returncode == 2 and "neither a finished run" in res.stderr
