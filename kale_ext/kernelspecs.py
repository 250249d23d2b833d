"""Install the kernelspecs of ``kernels/``.

A Python kernel with kale preloaded, and a kernel whose environment comes from site
modules or a conda env via a launcher script.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from kale_ext._errors import ConfigError

#: Kernelspec folder names, each installed under the same name.
SPECS = ("kale-python", "kale-env")

_ENV_KEYS = ("setup", "modules", "conda_env", "python")


def specs_dir() -> Path:
    """Find the kernelspecs' folder: inside the wheel, or ``kernels/`` of a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / "kale-python" / "kernel.json").is_file():
            return candidate
    raise ConfigError(f"The kale kernelspecs are missing (looked in {here / 'kernels'} and "
                      f"{here.parent / 'kernels'}); reinstall kale-ext.")


def install(spec: str = "kale-python", *, name: str | None = None, user: bool = False,
            prefix: str | None = None, display_name: str | None = None,
            env: dict[str, str] | None = None) -> str:
    """Install kernelspec ``spec``; return the folder it was installed to.

    Parameters
    ----------
    spec
        ``"kale-python"`` (this Python with kale preloaded) or ``"kale-env"`` (site
        modules / conda env through the launcher script).
    name, display_name
        The kernel's name and the label shown in the launcher.
    user, prefix
        Install for the current user, or under ``prefix`` (e.g. ``sys.prefix``);
        system-wide when neither is given.
    env
        For ``kale-env``: ``setup``, ``modules``, ``conda_env``, ``python``, written to
        the spec's ``KALE_KERNEL_*`` variables.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    if spec not in SPECS:
        raise ConfigError(f"Unknown kernelspec {spec!r}; expected one of {', '.join(SPECS)}.")
    env = dict(env or {})
    unknown = sorted(set(env) - set(_ENV_KEYS))
    if unknown:
        raise ConfigError(f"Unknown environment setting(s) {', '.join(unknown)}; expected "
                          f"{', '.join(_ENV_KEYS)}.")
    if env and spec != "kale-env":
        raise ConfigError("Environment settings (--module, --conda-env, --setup, --python) "
                          "are for the 'kale-env' kernel; add --spec kale-env.")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / (name or spec)
        shutil.copytree(specs_dir() / spec, staged)
        kernel = json.loads((staged / "kernel.json").read_text())
        if spec == "kale-python":
            kernel["argv"][0] = sys.executable  # the Python that has kale installed
        for key, value in env.items():
            kernel["env"][f"KALE_KERNEL_{key.upper()}"] = value
        if display_name:
            kernel["display_name"] = display_name
        (staged / "kernel.json").write_text(json.dumps(kernel, indent=2) + "\n")
        for script in staged.glob("*.sh"):  # a wheel may not keep the executable bit
            script.chmod(0o755)
        return str(KernelSpecManager().install_kernel_spec(
            str(staged), kernel_name=name or spec, user=user, prefix=prefix))


def installed() -> dict[str, dict[str, Any]]:
    """List every installed kernelspec by name.

    Each entry has its folder, display name, environment and kale kind (``preloaded``,
    ``environment``, or None for kernels that are not kale's).
    """
    from jupyter_client.kernelspec import KernelSpecManager

    out = {}
    for kernel_name, info in sorted(KernelSpecManager().get_all_specs().items()):
        spec = info["spec"]
        kale = (spec.get("metadata") or {}).get("kale_ext") or {}
        out[kernel_name] = {"resource_dir": info["resource_dir"],
                            "display_name": spec.get("display_name", kernel_name),
                            "kale": kale.get("kind"), "env": spec.get("env") or {}}
    return out
