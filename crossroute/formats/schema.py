"""JSON-schema cleaning for Gemini function declarations and response schemas.

Gemini accepts a subset of JSON Schema (``parametersJsonSchema`` / ``responseJsonSchema``) and an
even smaller OpenAPI subset in the legacy ``parameters`` / ``responseSchema`` fields. Schemas from
OpenAI or Anthropic clients routinely use keywords outside that subset ($ref, $defs, title, const,
type arrays, patternProperties, x-* extensions...) and the API answers 400 on them. ``clean_schema``
rewrites such a schema into the accepted subset without losing meaning where a rewrite exists:

1. normalise malformed input (a bare property map at the root, boolean ``required`` on properties);
2. inline local ``$ref`` (``#/$defs/X``, ``#/definitions/X``), cycles become an untyped object;
3. ``const`` -> one-value ``enum``; enum values become strings (type ``string``);
4. ``allOf`` branches merge into one object;
5. ``anyOf``/``oneOf`` with a ``null`` branch -> ``nullable``; one remaining branch is merged in;
6. type arrays ``["string", "null"]`` -> ``type: string`` + ``nullable``;
7. keywords outside the accepted set are dropped (only schema keywords: a *property* named
   ``title`` or ``$id`` is kept, since property maps are never filtered);
8. ``required`` is pruned to properties that exist.

``from_gemini_schema`` goes the other way for the legacy OpenAPI form (upper-case types,
``nullable``) so that neutral tool parameters are plain JSON Schema.

``clean_antigravity_schema`` / ``clean_antigravity_response_schema`` target Antigravity's backend
(Gemini and Claude models behind Google's Cloud Code API), which accepts less still: constraints
(``minLength``, ``pattern``, ``minimum``, ``format``...), ``not``, tool ``enum`` lists and tool
``additionalProperties`` are moved into the description as hints instead of being sent; unions
collapse to their richest branch; Claude models (VALIDATED function calling) also need every object
to require at least one property, so placeholders are added. The module is over 500 lines because
both cleaners share the walk's helpers here.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

__all__ = ["clean_antigravity_response_schema", "clean_antigravity_schema", "clean_schema", "from_gemini_schema"]

# Keywords kept on a schema node (JSON-schema field). Everything else is dropped.
_KEEP = frozenset(
    {
        "type",
        "format",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "anyOf",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minProperties",
        "maxProperties",
        "propertyOrdering",
        "default",
        "example",
        "additionalProperties",
    }
)
# String formats the API accepts; others ("uri", "email"...) are rejected with a 400.
_STRING_FORMATS = frozenset({"enum", "date-time"})
# Words that mark a dict as a schema node rather than a bare property map.
_SCHEMA_WORDS = frozenset(
    {
        "type",
        "properties",
        "items",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "enum",
        "const",
        "description",
        "required",
        "$schema",
        "$defs",
        "definitions",
        "additionalProperties",
        "format",
        "title",
        "nullable",
    }
)
_SCALAR_TYPES = {"string": str, "boolean": bool, "integer": int, "number": (int, float)}
_MAX_REF_DEPTH = 16


def _definitions(root: dict[str, Any]) -> dict[str, Any]:
    """The schema's ``$defs`` / ``definitions`` by the ``$ref`` that names them."""
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        d = root.get(key)
        if isinstance(d, dict):
            for name, sub in d.items():
                defs[f"#/{key}/{name}"] = sub
    return defs


def clean_schema(schema: dict[str, Any], *, legacy: bool = False) -> dict[str, Any]:
    """A new schema Gemini accepts. ``legacy=True`` targets the OpenAPI-subset ``parameters`` /
    ``responseSchema`` fields, which also reject ``additionalProperties``."""
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    root = _normalise_root(schema)
    defs = _definitions(root)
    out = _clean(root, defs, legacy, ())
    if "type" not in out and "properties" in out:
        out["type"] = "object"
    return out


def _normalise_root(schema: dict[str, Any]) -> dict[str, Any]:
    """A bare property map ({"city": {"type": "string"}}) becomes an object schema."""
    if schema and not (schema.keys() & _SCHEMA_WORDS) and all(isinstance(v, dict) for v in schema.values()):
        return {"type": "object", "properties": schema}
    return schema


def _clean(node: Any, defs: dict[str, Any], legacy: bool, refs: tuple[str, ...]) -> dict[str, Any]:
    if node is True or not isinstance(node, dict):
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref)
        if target is None or ref in refs or len(refs) >= _MAX_REF_DEPTH:
            resolved: dict[str, Any] = {"type": "object"}
        else:
            resolved = _clean(target, defs, legacy, (*refs, ref))
        desc = node.get("description")
        if isinstance(desc, str) and desc:
            resolved["description"] = desc
        return resolved

    src = node
    if isinstance(src.get("allOf"), list):
        src = _merge_all_of(src)

    out: dict[str, Any] = {}
    nullable = src.get("nullable") is True

    # type: lower-case; arrays -> first non-null type + nullable
    t = src.get("type")
    if isinstance(t, list):
        types = [x.lower() for x in t if isinstance(x, str)]
        if "null" in types:
            nullable = True
        non_null = [x for x in types if x != "null"]
        if non_null:
            out["type"] = non_null[0]
    elif isinstance(t, str):
        if t.lower() == "null":
            nullable = True
        else:
            out["type"] = t.lower()

    # anyOf / oneOf: drop null branches; a single branch is merged in
    branches = src.get("anyOf")
    if not isinstance(branches, list):
        branches = src.get("oneOf")
    if isinstance(branches, list):
        kept = []
        for b in branches:
            if isinstance(b, dict) and (b.get("type") == "null" or b.get("type") == ["null"]):
                nullable = True
                continue
            kept.append(_clean(b, defs, legacy, refs))
        if len(kept) == 1:
            for k, v in kept[0].items():
                if k == "nullable":
                    nullable = nullable or v is True
                elif k not in out:
                    out[k] = v
        elif kept:
            out["anyOf"] = kept

    # const / enum -> string enum
    values, had_null = _enum_values(src)
    if had_null:
        nullable = True
    if values is not None:
        if values:
            out["enum"] = values
            out["type"] = "string"

    for key, value in src.items():
        if key in out or key not in _KEEP or key in ("type", "anyOf", "enum", "nullable"):
            continue
        if key == "properties":
            if isinstance(value, dict):
                props, req = _clean_properties(value, defs, legacy, refs)
                out["properties"] = props
                if req:
                    out["_bool_required"] = req
        elif key == "items":
            if isinstance(value, list):  # tuple form: keep the first schema
                value = value[0] if value else {}
            out["items"] = _clean(value, defs, legacy, refs)
        elif key == "additionalProperties":
            if legacy:
                continue
            if isinstance(value, bool):
                out[key] = value
            elif isinstance(value, dict):
                out[key] = _clean(value, defs, legacy, refs)
        elif key == "required":
            if isinstance(value, list):
                out["required"] = [r for r in value if isinstance(r, str)]
        elif key == "format":
            if isinstance(value, str) and (out.get("type") != "string" or value in _STRING_FORMATS):
                out[key] = value
        elif key == "default":
            if _valid_default(value, out.get("type"), out.get("enum")):
                out[key] = value
        elif key == "description":
            if isinstance(value, str):
                out[key] = value
        else:
            out[key] = value

    if "items" not in out and out.get("type") == "array" and isinstance(src.get("prefixItems"), list):
        first = src["prefixItems"][0] if src["prefixItems"] else {}
        out["items"] = _clean(first, defs, legacy, refs)

    # required: merge boolean per-property flags, dedupe, prune to existing properties
    req = list(out.pop("required", []))
    req.extend(out.pop("_bool_required", []))
    props = out.get("properties")
    if req and isinstance(props, dict):
        seen: list[str] = []
        for r in req:
            if r in props and r not in seen:
                seen.append(r)
        if seen:
            out["required"] = seen
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    if nullable:
        out["nullable"] = True
    return out


def _clean_properties(
    props: dict[str, Any], defs: dict[str, Any], legacy: bool, refs: tuple[str, ...]
) -> tuple[dict[str, Any], list[str]]:
    """Clean every property schema (names are never filtered); collect draft-3 style
    ``"required": true`` flags on properties into the parent's required list."""
    out: dict[str, Any] = {}
    required: list[str] = []
    for name, sub in props.items():
        if isinstance(sub, dict) and isinstance(sub.get("required"), bool):
            if sub["required"]:
                required.append(name)
            sub = {k: v for k, v in sub.items() if k != "required"}
        out[name] = _clean(sub, defs, legacy, refs)
    return out, required


def _merge_all_of(node: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in node.items() if k != "allOf"}
    props: dict[str, Any] = dict(merged.get("properties") or {})
    required: list[Any] = (
        list(merged.get("required") or []) if isinstance(merged.get("required"), list) else []
    )
    for branch in node["allOf"]:
        if not isinstance(branch, dict):
            continue
        if isinstance(branch.get("allOf"), list):
            branch = _merge_all_of(branch)
        for k, v in branch.items():
            if k == "properties" and isinstance(v, dict):
                props.update(v)
            elif k == "required" and isinstance(v, list):
                required.extend(v)
            elif k not in merged:
                merged[k] = v
    if props:
        merged["properties"] = props
    if required:
        merged["required"] = required
    return merged


def _enum_values(src: dict[str, Any]) -> tuple[list[str] | None, bool]:
    """``const`` / ``enum`` as distinct strings (None: neither is a list), and whether null was one."""
    enum_src: Any = [src["const"]] if "const" in src else src.get("enum")
    if not isinstance(enum_src, list):
        return None, False
    values: list[str] = []
    had_null = False
    for v in enum_src:
        if v is None:
            had_null = True
            continue
        text = _enum_str(v)
        if text not in values:
            values.append(text)
    return values, had_null


def _enum_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return str(v)
    return orjson.dumps(v).decode()


def _valid_default(value: Any, typ: Any, enum: Any) -> bool:
    if value is None:
        return False
    if isinstance(enum, list):
        return isinstance(value, str) and value in enum
    if typ in _SCALAR_TYPES:
        if typ != "boolean" and isinstance(value, bool):
            return False
        return isinstance(value, _SCALAR_TYPES[typ])
    if typ == "array":
        return isinstance(value, list)
    if typ == "object":
        return isinstance(value, dict)
    return False


def from_gemini_schema(schema: Any) -> Any:
    """Legacy Gemini (OpenAPI subset) schema -> plain JSON Schema: lower-case types and
    ``nullable: true`` -> ``type: [t, "null"]``. Returns a new object."""
    if isinstance(schema, list):
        return [from_gemini_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return copy.deepcopy(schema)
    out: dict[str, Any] = {}
    for k, v in schema.items():
        if k == "properties" and isinstance(v, dict):
            out[k] = {name: from_gemini_schema(sub) for name, sub in v.items()}
        elif k in ("items", "anyOf", "oneOf", "allOf") or (
            k == "additionalProperties" and isinstance(v, dict)
        ):
            out[k] = from_gemini_schema(v)
        elif k == "type" and isinstance(v, str):
            out[k] = v.lower()
        elif k == "nullable":
            continue
        else:
            out[k] = copy.deepcopy(v)
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def schema_with_description(rf: Any) -> dict[str, Any]:
    """The schema of a json_schema ResponseFormat with its ``description`` as the schema's own
    top-level ``description`` (for formats whose output format has no description field: Gemini's
    responseJsonSchema, Anthropic's output_config.format). A description the schema already has wins."""
    schema: dict[str, Any] = rf.schema or {}
    if rf.description and "description" not in schema:
        return {**schema, "description": rf.description}
    return schema


# ------------------------------------------------------------------ Antigravity (Cloud Code) schemas
# constraints the backend rejects or ignores: kept as "key: value" hints in the description
_AG_HINTED = ("minLength", "maxLength", "exclusiveMinimum", "exclusiveMaximum", "pattern", "minItems", "maxItems",
              "uniqueItems", "format", "default", "examples", "minimum", "maximum", "multipleOf", "minProperties",
              "maxProperties")
PLACEHOLDER_REASON = "Brief explanation of why you are calling this tool"
_AG_MAX_DEPTH = 64


class _AgOptions:
    __slots__ = ("placeholders", "response", "title")

    def __init__(self, *, response: bool, placeholders: bool, title: bool) -> None:
        self.response = response  # a response schema: enums and additionalProperties: false are kept
        self.placeholders = placeholders  # Claude's VALIDATED mode: every object requires a property
        self.title = title


def clean_antigravity_schema(schema: Any, *, placeholders: bool = False) -> dict[str, Any]:
    """A tool's parameter schema for Antigravity. ``placeholders=True`` for Claude models (and the
    Gemini Pro models that validate calls the same way): an object without properties gets a
    required ``reason`` string, one whose properties are all optional a required ``_`` boolean."""
    return _ag_root(schema, _AgOptions(response=False, placeholders=placeholders, title=placeholders))


def clean_antigravity_response_schema(schema: Any) -> dict[str, Any]:
    """A structured-output schema for Antigravity: the contract stays (enums other than boolean,
    ``additionalProperties: false``, nullability); unsupported constraints become hints."""
    return _ag_root(schema, _AgOptions(response=True, placeholders=False, title=True))


def _ag_root(schema: Any, opts: _AgOptions) -> dict[str, Any]:
    if not isinstance(schema, dict):
        schema = {"type": "object", "properties": {}}
    root = _normalise_root(schema)
    defs = _definitions(root)
    if not opts.response and not (root.keys() & {"type", "anyOf", "oneOf", "allOf", "$ref"}):
        root = {**root, "type": "object"}  # a tool's parameters are an object, even when unsaid
    out = _ag(root, defs, opts, (), 0)
    if "type" not in out and "properties" in out:
        out["type"] = "object"
    return out


def _hint(node: dict[str, Any], hint: str) -> None:
    """Append ``hint`` to the description once (a schema cleaned twice keeps one copy)."""
    existing = node.get("description")
    if not isinstance(existing, str) or not existing:
        node["description"] = hint
    elif existing != hint and not existing.startswith(hint + " (") and f"({hint})" not in existing:
        node["description"] = f"{existing} ({hint})"


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~") or ref


def _branch_rank(branch: dict[str, Any]) -> tuple[int, str]:
    t = branch.get("type")
    if t == "object" or "properties" in branch:
        return 3, t if isinstance(t, str) else "object"
    if t == "array" or "items" in branch:
        return 2, t if isinstance(t, str) else "array"
    if isinstance(t, str) and t != "null":
        return 1, t
    return 0, t if isinstance(t, str) else ""


def _ag(node: Any, defs: dict[str, Any], opts: _AgOptions, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
    if not isinstance(node, dict) or depth > _AG_MAX_DEPTH:
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        target = defs.get(ref)
        if target is None or ref in refs or len(refs) >= _MAX_REF_DEPTH or not isinstance(target, dict):
            out = _ag(siblings, defs, opts, refs, depth + 1) if siblings else {}
            out.setdefault("type", "object")
            _hint(out, f"See: {_ref_name(ref)}")
            if opts.placeholders and out["type"] == "object":
                _add_placeholder(out)
            return out
        merged = {**target, **siblings}
        return _ag(merged, defs, opts, (*refs, ref), depth + 1)

    src = node
    if isinstance(src.get("allOf"), list):
        src = _merge_all_of(src)
    if isinstance(src.get("then"), dict) or isinstance(src.get("else"), dict):
        src = _merge_conditionals(src)

    out: dict[str, Any] = {}
    desc = src.get("description")
    if isinstance(desc, str) and desc:
        out["description"] = desc
    if opts.title and isinstance(src.get("title"), str):
        out["title"] = src["title"]
    nullable = src.get("nullable") is True

    t = src.get("type")
    if isinstance(t, list):
        types = [x.lower() for x in t if isinstance(x, str)]
        non_null = [x for x in types if x != "null"]
        out["type"] = non_null[0] if non_null else "string"
        if len(non_null) > 1:
            _hint(out, "Accepts: " + " | ".join(non_null))
        if "null" in types:
            nullable = True
            _hint(out, "(nullable)")
    elif isinstance(t, str):
        if t.lower() == "null":
            nullable = True
        else:
            out["type"] = t.lower()

    # anyOf / oneOf: the richest branch stands for the union; null branches make it nullable
    branches = src.get("anyOf") if isinstance(src.get("anyOf"), list) else src.get("oneOf")
    if isinstance(branches, list) and branches:
        kept_src = [b for b in branches if isinstance(b, dict) and b.get("type") not in ("null", ["null"])]
        if len(kept_src) < len(branches):
            nullable = True
        real = [b for b in (_ag(b, defs, opts, refs, depth + 1) for b in kept_src) if b]
        if real:
            ranked = [_branch_rank(b) for b in real]
            best = max(range(len(real)), key=lambda i: (ranked[i][0], -i))
            names = [name for _, name in ranked if name]
            chosen = real[best]
            for k, v in chosen.items():
                if k == "description":
                    if "description" in out:
                        _hint(out, v)
                    else:
                        out["description"] = v
                elif k == "nullable":
                    nullable = nullable or v is True
                elif k not in out:
                    out[k] = v
            if len(set(names)) > 1:
                _hint(out, "Accepts: " + " | ".join(names))

    # const / enum: string values; tools keep them only as hints (the backend does not enforce them)
    values, had_null = _enum_values(src)
    if had_null:
        nullable = True
    if values is not None:
        if values:
            if 1 < len(values) <= 10:
                _hint(out, "Allowed: " + ", ".join(values))
            drop = not opts.response or out.get("type") == "boolean"
            if drop:
                if len(values) == 1:
                    _hint(out, "Allowed: " + values[0])
            else:
                out["enum"] = values
                out.setdefault("type", "string")

    for key in _AG_HINTED:
        value = src.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        _hint(out, f"{key}: {_scalar_text(value)}")
    if "not" in src:
        _hint(out, "not: " + orjson.dumps(src["not"]).decode())

    props = src.get("properties")
    if isinstance(props, dict):
        cleaned_props: dict[str, Any] = {}
        required: list[str] = []
        for name, sub in props.items():
            if isinstance(sub, dict) and isinstance(sub.get("required"), bool):
                if sub["required"]:
                    required.append(name)
                sub = {k: v for k, v in sub.items() if k != "required"}
            cleaned_props[name] = _ag(sub, defs, opts, refs, depth + 1) if isinstance(sub, dict) else {}
        out["properties"] = cleaned_props
        listed = src.get("required")
        if isinstance(listed, list):
            required = [r for r in listed if isinstance(r, str)] + required
        kept: list[str] = []
        for r in required:
            if r in cleaned_props and r not in kept:
                kept.append(r)
        if kept:
            out["required"] = kept
        out.setdefault("type", "object")

    order = src.get("propertyOrdering")
    if opts.response and isinstance(order, list) and isinstance(out.get("properties"), dict):
        kept_order = [p for p in order if isinstance(p, str) and p in out["properties"]]
        if kept_order:
            out["propertyOrdering"] = kept_order

    items = src.get("items")
    if isinstance(items, list):
        items = items[0] if items else None
    if items is None and isinstance(src.get("prefixItems"), list) and src["prefixItems"]:
        items = src["prefixItems"][0]
    if isinstance(items, dict):
        out["items"] = _ag(items, defs, opts, refs, depth + 1)

    extra = src.get("additionalProperties")
    if extra is False:
        if opts.response:
            out["additionalProperties"] = False
        else:
            _hint(out, "No extra properties allowed")

    if nullable:
        out["nullable"] = True
    if opts.placeholders and out.get("type") == "object":
        _add_placeholder(out)
    return out


def _add_placeholder(node: dict[str, Any]) -> None:
    props = node.get("properties")
    if not props:
        node["properties"] = {"reason": {"type": "string", "description": PLACEHOLDER_REASON}}
        node["required"] = ["reason"]
    elif not node.get("required"):
        props.setdefault("_", {"type": "boolean"})
        node["required"] = ["_"]


def _merge_conditionals(node: dict[str, Any]) -> dict[str, Any]:
    """``then`` / ``else`` properties join the node's own (never replacing one it has)."""
    merged = {k: v for k, v in node.items() if k not in ("if", "then", "else")}
    props: dict[str, Any] = dict(merged.get("properties") or {}) if isinstance(merged.get("properties"), dict) else {}
    for key in ("then", "else"):
        branch = node.get(key)
        if isinstance(branch, dict) and isinstance(branch.get("properties"), dict):
            for name, sub in branch["properties"].items():
                props.setdefault(name, sub)
    if props:
        merged["properties"] = props
    return merged
