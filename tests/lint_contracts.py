"""An import-linter contract type for ``make lint``: no reaching into another package.

Registered in pyproject.toml under ``[tool.importlinter] contract_types``. import-linter's
own contracts cannot say "a module whose name starts with ``_``" (its wildcards stand for
whole module names), and ruff's banned-api (TID251) bans a module everywhere, the package
that owns it included; this contract checks the rule directly on import-linter's graph.
"""

from __future__ import annotations

from typing import Any

from importlinter import Contract, ContractCheck, fields, output


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


class PrivateModulesContract(Contract):
    """No unit under ``container`` imports a private ``_`` module of another unit.

    A unit is a child of ``container``: a package or a top-level module. A module is
    private when a part of its name below its unit starts with one underscore
    (``kale_ext.search._driver``, ``kale_ext.search.schedulers._asha``).
    """

    container = fields.StringField()

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        """Collect every import of another unit's private module, with file lines."""
        container = str(self.container)
        depth = container.count(".") + 1
        broken = []
        for importer in sorted(graph.modules):
            if not importer.startswith(f"{container}."):
                continue
            unit = importer.split(".")[depth]
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                parts = imported.split(".")
                if (imported.startswith(f"{container}.") and parts[depth] != unit
                        and any(_private(p) for p in parts[depth + 1:])):
                    lines = [(d["line_number"], d["line_contents"]) for d in
                             graph.get_import_details(importer=importer, imported=imported)]
                    broken.append((importer, imported, lines))
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """Print each offending import as ``importer:line: statement``."""
        for importer, imported, lines in check.metadata["broken"]:
            output.print_error(f"{importer} imports {imported}, a private module of another "
                               "package; export what it needs publicly:", bold=True)
            for line, contents in lines:
                output.print_error(f"    {importer}:{line}: {contents}", bold=False)
            output.new_line()
