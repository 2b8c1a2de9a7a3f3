"""Sphinx extension: emit each inline <script> only once per page.

Under Jupyter Book 1, sphinx-thebe registers its inline configuration script twice, so
every page declares ``const THEBE_JS_URL`` twice and the browser logs a SyntaxError.
This drops repeated inline scripts (same body, same attributes; Sphinx registers them once with filename None and once
with filename "") from each page.
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {}) or {}
        key = (
            getattr(script, "filename", None) or None,
            tuple(sorted((k, str(v)) for k, v in attributes.items())),
        )
        if key in seen and attributes.get("body"):
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
