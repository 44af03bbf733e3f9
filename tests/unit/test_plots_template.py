"""tools/plots_template.py inlines the pinned npm libraries into a page dvc_render can fill,
and refuses packages that are missing or not the pinned version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "plots_template.py"
BUILDS = {
    "vega": "build/vega.min.js",
    "vega-lite": "build/vega-lite.min.js",
    "vega-embed": "build/vega-embed.min.js",
}


def fake_project(root: Path, installed: dict[str, str]) -> None:
    """package.json pinning version 1.0.0 of each library; ``installed`` name -> version."""
    (root / "package.json").write_text(json.dumps({"dependencies": dict.fromkeys(BUILDS, "1.0.0")}))
    for name, version in installed.items():
        package = root / "node_modules" / name
        (package / "build").mkdir(parents=True)
        (package / "package.json").write_text(json.dumps({"version": version}))
        code = f'window["{name}"]="</script>";\n//# sourceMappingURL={name}.min.js.map\n'
        (package / BUILDS[name]).write_text(code)


def build(root: Path) -> subprocess.CompletedProcess[str]:
    out = root / "out" / "template.html"
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_libraries_are_inlined_in_load_order_with_no_network(tmp_path: Path) -> None:
    fake_project(tmp_path, dict.fromkeys(BUILDS, "1.0.0"))
    assert build(tmp_path).returncode == 0
    page = (tmp_path / "out" / "template.html").read_text()
    positions = [page.index(f'window["{name}"]') for name in BUILDS]
    assert positions == sorted(positions)
    assert page.count("<script>") == 3 and page.count("</script>") == 3  # none from the code
    assert "<\\/script>" in page and "sourceMappingURL" not in page and "http" not in page
    # dvc_render fills {plot_divs}; without {scripts} its CDN <script> tags have nowhere to go.
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page


def test_a_package_that_is_not_the_pinned_version_is_refused(tmp_path: Path) -> None:
    fake_project(tmp_path, dict.fromkeys(BUILDS, "1.0.0") | {"vega-lite": "0.9.0"})
    result = build(tmp_path)
    assert result.returncode == 1
    assert "vega-lite 0.9.0 is installed but package.json pins 1.0.0: run `npm ci`" in result.stderr


def test_a_missing_package_says_how_to_install_it(tmp_path: Path) -> None:
    fake_project(tmp_path, {"vega": "1.0.0"})
    result = build(tmp_path)
    assert result.returncode == 1 and "vega-lite is not installed: run `npm ci`" in result.stderr
