"""Plain helpers that several test files call with arguments (plain values and functions, not fixtures).

Tests import them as `from helpers import ...`: pytest puts tests/ on sys.path (rootdir-relative
"prepend" import mode; tests/ is not a package)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A tiny two-symbol `trainers.ppo` command line: one-layer encoder, short rollouts, cpu, checkpoint
# every iteration. tiny_args(run_dir, n) runs it for exactly n iterations.
NUM_STEPS, ENVS = 16, 4
BATCH = NUM_STEPS * ENVS * 2  # account-steps per iteration with two symbols
TINY = [
    "--symbols", "SPX,GOOGL", "--data-dir", str(ROOT / "data"), "--envs-per-symbol", str(ENVS),
    "--seed", "3", "--device", "cpu",
    "--set", "run.encoder_preset=custom", "--set", "model.encoder.n_layers=1",
    "--set", "model.encoder.d_model=16", "--set", "model.encoder.n_heads=2",
    "--set", "model.encoder.d_ff=32", "--set", "model.encoder.out_dim=16",
    "--set", "model.encoder.dropout=0.0", "--set", "model.actor_hidden=[32]",
    "--set", "model.critic_hidden=[32]", "--set", f"run.num_steps={NUM_STEPS}",
    "--set", "env.episode_length=20", "--set", "run.checkpoint_every=1", "--set", "run.torch_threads=1",
]


def tiny_args(run_dir: Path, iterations: int) -> list[str]:
    return TINY + ["--run-dir", str(run_dir), "--total-steps", str(iterations * BATCH)]


def check_report_page(page: Path, out_dir: Path) -> int:
    """An HTML tear sheet is self-contained and renders: every <img> is an inline PNG that decodes,
    nothing is loaded from elsewhere; where Chromium is installed, headless Chromium loads it with
    no console error and its screenshot is far from blank. Returns the number of images."""
    import base64
    import re
    import shutil
    import subprocess

    import matplotlib.image

    text = page.read_text(encoding="utf-8")
    sources = re.findall(r'<img[^>]* src="([^"]+)"', text)
    assert sources, f"{page}: no image"
    for source in sources:
        assert source.startswith("data:image/png;base64,"), source[:60]
        data = base64.b64decode(source.split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(?!data:)', text), "the page loads something from elsewhere"
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        return len(sources)
    shot = out_dir / f"{page.stem}.screenshot.png"
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--window-size=1200,2400", f"--screenshot={shot}", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    console_errors = [line for line in run.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert run.returncode == 0 and not console_errors, (run.returncode, console_errors)
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert (pixels.min(axis=-1) < 0.9).mean() > 0.03, "the screenshot is nearly blank"
    return len(sources)
