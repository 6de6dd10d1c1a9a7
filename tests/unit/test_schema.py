"""JSON-schema cleaning for Gemini (crossroute.formats.schema): one test per rule."""

from __future__ import annotations

import copy

from crossroute.formats.schema import clean_schema, from_gemini_schema


def test_pure_returns_new_dict() -> None:
    src = {
        "type": "object",
        "title": "T",
        "properties": {"a": {"type": "string", "title": "A"}},
        "required": ["a", "zzz"],
    }
    before = copy.deepcopy(src)
    out = clean_schema(src)
    assert src == before
    assert out is not src
    assert out == {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


def test_drops_unsupported_keywords() -> None:
    src = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "urn:x",
        "$comment": "c",
        "title": "Params",
        "type": "object",
        "x-google-extension": 1,
        "examples": [{"q": "x"}],
        "patternProperties": {"^x": {"type": "string"}},
        "unevaluatedProperties": False,
        "properties": {
            "q": {"type": "string", "description": "query", "minLength": 1, "readOnly": True, "x-foo": "bar"},
        },
    }
    assert clean_schema(src) == {
        "type": "object",
        "properties": {"q": {"type": "string", "description": "query", "minLength": 1}},
    }


def test_keeps_properties_named_like_keywords() -> None:
    src = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "$id": {"type": "integer"},
            "x-trace": {"type": "string"},
            "examples": {"type": "array", "items": {"type": "string"}},
            "default": {"type": "boolean"},
        },
        "required": ["title", "$id"],
    }
    out = clean_schema(src)
    assert list(out["properties"]) == ["title", "$id", "x-trace", "examples", "default"]
    assert out["properties"]["$id"] == {"type": "integer"}
    assert out["required"] == ["title", "$id"]


def test_additional_properties_kept_for_json_schema_dropped_for_legacy() -> None:
    src = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    assert clean_schema(src)["additionalProperties"] is False
    assert "additionalProperties" not in clean_schema(src, legacy=True)
    nested = {"type": "object", "additionalProperties": {"type": "string", "title": "v"}}
    assert clean_schema(nested)["additionalProperties"] == {"type": "string"}


def test_inlines_local_refs_and_drops_defs() -> None:
    src = {
        "type": "object",
        "$defs": {"Addr": {"type": "object", "title": "Addr", "properties": {"city": {"type": "string"}}}},
        "definitions": {"Name": {"type": "string"}},
        "properties": {
            "home": {"$ref": "#/$defs/Addr", "description": "home address"},
            "name": {"$ref": "#/definitions/Name"},
            "list": {"type": "array", "items": {"$ref": "#/$defs/Addr"}},
        },
    }
    out = clean_schema(src)
    assert "$defs" not in out and "definitions" not in out
    assert out["properties"]["home"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "description": "home address",
    }
    assert out["properties"]["name"] == {"type": "string"}
    assert out["properties"]["list"]["items"]["properties"] == {"city": {"type": "string"}}


def test_recursive_and_unknown_refs_terminate() -> None:
    src = {
        "type": "object",
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "properties": {"root": {"$ref": "#/$defs/Node"}, "ext": {"$ref": "https://example.com/s.json"}},
    }
    out = clean_schema(src)
    assert out["properties"]["root"]["properties"]["next"] == {"type": "object"}
    assert out["properties"]["ext"] == {"type": "object"}


def test_const_becomes_enum() -> None:
    assert clean_schema({"const": "fixed"}) == {"enum": ["fixed"], "type": "string"}


def test_enum_values_become_strings() -> None:
    out = clean_schema({"type": "integer", "enum": [1, 2, 3]})
    assert out == {"enum": ["1", "2", "3"], "type": "string"}
    out = clean_schema({"enum": [True, "a", 1.5, None]})
    assert out == {"enum": ["true", "a", "1.5"], "type": "string", "nullable": True}


def test_type_array_with_null_becomes_nullable() -> None:
    assert clean_schema({"type": ["string", "null"]}) == {"type": "string", "nullable": True}
    assert clean_schema({"type": ["null", "integer"], "description": "n"}) == {
        "type": "integer",
        "description": "n",
        "nullable": True,
    }
    assert clean_schema({"type": ["number", "string"]}) == {"type": "number"}


def test_any_of_with_null_branch_becomes_nullable() -> None:
    src = {"anyOf": [{"type": "string", "title": "S"}, {"type": "null"}], "description": "d"}
    assert clean_schema(src) == {"type": "string", "description": "d", "nullable": True}
    src = {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
    assert clean_schema(src) == {"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": True}


def test_all_of_merges() -> None:
    src = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    }
    out = clean_schema(src)
    assert out == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    }


def test_required_pruned_and_deduped() -> None:
    src = {"type": "object", "properties": {"a": {}, "b": {}}, "required": ["b", "gone", "b", "a"]}
    assert clean_schema(src)["required"] == ["b", "a"]
    assert "required" not in clean_schema({"type": "object", "properties": {}, "required": ["x"]})
    assert "required" not in clean_schema({"type": "object", "required": ["x"]})


def test_bare_property_map_normalised() -> None:
    src = {"city": {"type": "string"}, "days": {"type": "integer"}}
    assert clean_schema(src) == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    }


def test_boolean_required_normalised() -> None:
    src = {
        "type": "object",
        "required": True,
        "properties": {"a": {"type": "string", "required": True}, "b": {"type": "string", "required": False}},
    }
    assert clean_schema(src) == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "required": ["a"],
    }


def test_default_kept_only_when_valid() -> None:
    assert clean_schema({"type": "integer", "default": 3}) == {"type": "integer", "default": 3}
    assert clean_schema({"type": "integer", "default": "3"}) == {"type": "integer"}
    assert clean_schema({"type": "string", "default": None}) == {"type": "string"}
    assert clean_schema({"type": "boolean", "default": True}) == {"type": "boolean", "default": True}
    assert clean_schema({"type": "integer", "default": True}) == {"type": "integer"}
    assert clean_schema({"enum": ["a", "b"], "default": "c"}) == {"enum": ["a", "b"], "type": "string"}


def test_string_formats_limited() -> None:
    assert clean_schema({"type": "string", "format": "uri"}) == {"type": "string"}
    assert clean_schema({"type": "string", "format": "date-time"}) == {
        "type": "string",
        "format": "date-time",
    }
    assert clean_schema({"type": "integer", "format": "int64"}) == {"type": "integer", "format": "int64"}


def test_types_lowercased_and_object_inferred() -> None:
    assert clean_schema({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}) == {
        "type": "object",
        "properties": {"a": {"type": "string"}},
    }
    assert clean_schema({"properties": {"a": {"type": "string"}}})["type"] == "object"


def test_tuple_items_and_boolean_schemas() -> None:
    out = clean_schema({"type": "array", "items": [{"type": "string"}, {"type": "integer"}]})
    assert out == {"type": "array", "items": {"type": "string"}}
    out = clean_schema({"type": "array", "prefixItems": [{"type": "integer"}]})
    assert out == {"type": "array", "items": {"type": "integer"}}
    out = clean_schema({"type": "object", "properties": {"any": True}})
    assert out == {"type": "object", "properties": {"any": {}}}


def test_non_dict_input() -> None:
    assert clean_schema(None) == {"type": "object", "properties": {}}  # type: ignore[arg-type]


def test_from_gemini_schema() -> None:
    legacy = {
        "type": "OBJECT",
        "properties": {
            "a": {"type": "STRING", "nullable": True},
            "b": {"type": "ARRAY", "items": {"type": "INTEGER"}},
            "type": {"type": "STRING"},
        },
        "required": ["a"],
    }
    assert from_gemini_schema(legacy) == {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": "array", "items": {"type": "integer"}},
            "type": {"type": "string"},
        },
        "required": ["a"],
    }
    # and back: the cleaner turns the type array into nullable again
    assert clean_schema(from_gemini_schema(legacy))["properties"]["a"] == {"type": "string", "nullable": True}


# ------------------------------------------------------------------ Antigravity (Cloud Code) cleaners
from crossroute.formats.schema import (  # noqa: E402
    PLACEHOLDER_REASON,
    clean_antigravity_response_schema,
    clean_antigravity_schema,
)


def test_antigravity_constraints_become_hints() -> None:
    src = {"type": "object", "properties": {
        "q": {"type": "string", "description": "query", "minLength": 2, "pattern": "^a", "format": "email"},
        "n": {"type": "integer", "minimum": 1, "maximum": 9, "multipleOf": 3, "default": 3},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
    }}
    out = clean_antigravity_schema(src)
    assert out["properties"]["q"] == {"type": "string",
                                      "description": "query (minLength: 2) (pattern: ^a) (format: email)"}
    assert out["properties"]["n"] == {"type": "integer",
                                      "description": "default: 3 (minimum: 1) (maximum: 9) (multipleOf: 3)"}
    assert out["properties"]["tags"] == {"type": "array", "items": {"type": "string"},
                                         "description": "minItems: 1 (uniqueItems: true)"}
    again = clean_antigravity_schema(out)  # cleaning twice adds no second copy of a hint
    assert again["properties"]["q"]["description"] == out["properties"]["q"]["description"]


def test_antigravity_tool_enums_are_hints_response_enums_stay() -> None:
    src = {"type": "object", "properties": {"u": {"type": "string", "enum": ["c", "f"]}, "k": {"const": "x"},
                                            "b": {"type": "boolean", "enum": [True, False]}}}
    tool = clean_antigravity_schema(src)
    assert tool["properties"]["u"] == {"type": "string", "description": "Allowed: c, f"}
    assert tool["properties"]["k"] == {"description": "Allowed: x"}
    resp = clean_antigravity_response_schema(src)
    assert resp["properties"]["u"]["enum"] == ["c", "f"]
    assert resp["properties"]["k"] == {"type": "string", "enum": ["x"]}
    assert "enum" not in resp["properties"]["b"]  # boolean enums are ignored by the backend: dropped
    ordered = clean_antigravity_response_schema({**src, "propertyOrdering": ["b", "gone", "u"]})
    assert ordered["propertyOrdering"] == ["b", "u"]
    assert "propertyOrdering" not in clean_antigravity_schema({**src, "propertyOrdering": ["b"]})


def test_antigravity_unions_take_the_richest_branch() -> None:
    src = {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"a": {"type": "string"}}},
                     {"type": "null"}], "description": "d"}
    out = clean_antigravity_schema(src)
    assert out["type"] == "object" and out["properties"] == {"a": {"type": "string"}}
    assert out["nullable"] is True and out["description"] == "d (Accepts: string | object)"
    typed = clean_antigravity_schema({"type": "object", "properties": {"x": {"type": ["integer", "string", "null"]}}})
    assert typed["properties"]["x"] == {"type": "integer", "nullable": True,
                                        "description": "Accepts: integer | string ((nullable))"}


def test_antigravity_refs_not_and_conditionals() -> None:
    src = {"type": "object", "$defs": {"P": {"type": "object", "properties": {"id": {"type": "string"}},
                                             "required": ["id"]}},
           "properties": {"p": {"$ref": "#/$defs/P", "description": "person"}, "ext": {"$ref": "http://x/Y"},
                          "s": {"type": "string", "not": {"const": "bad"}}},
           "if": {"properties": {"kind": {"const": "a"}}}, "then": {"properties": {"extra": {"type": "string"}}},
           "patternProperties": {"^x-": {"type": "string"}}, "x-internal": True, "additionalProperties": False}
    out = clean_antigravity_schema(src)
    assert out["properties"]["p"] == {"description": "person", "type": "object",
                                      "properties": {"id": {"type": "string"}}, "required": ["id"]}
    assert out["properties"]["ext"] == {"type": "object", "description": "See: Y"}
    assert out["properties"]["s"]["description"] == 'not: {"const":"bad"}'
    assert "extra" in out["properties"]
    assert not {"if", "then", "patternProperties", "x-internal", "additionalProperties", "$defs"} & set(out)
    assert out["description"] == "No extra properties allowed"


def test_antigravity_placeholders_for_validated_calls() -> None:
    src = {"type": "object", "title": "Args", "properties": {
        "empty": {"type": "object"}, "loose": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    plain = clean_antigravity_schema(src)
    assert "title" not in plain and plain["properties"]["empty"] == {"type": "object"}
    out = clean_antigravity_schema(src, placeholders=True)
    assert out["title"] == "Args"
    assert out["properties"]["empty"]["properties"] == {"reason": {"type": "string", "description": PLACEHOLDER_REASON}}
    assert out["properties"]["empty"]["required"] == ["reason"]
    assert out["properties"]["loose"]["required"] == ["_"]
    assert out["properties"]["loose"]["properties"]["_"] == {"type": "boolean"}
    assert out["required"] == ["_"]  # the root too: every object requires a property
    assert clean_antigravity_schema({}, placeholders=True)["required"] == ["reason"]


def test_antigravity_cleaners_do_not_change_their_input_and_survive_junk() -> None:
    src = {"type": "object", "properties": {"a": {"type": "string", "minLength": 1}}}
    before = copy.deepcopy(src)
    clean_antigravity_schema(src, placeholders=True)
    clean_antigravity_response_schema(src)
    assert src == before
    deep: dict = {"type": "object"}
    node = deep
    for _ in range(200):
        node["properties"] = {"n": {"type": "object"}}
        node = node["properties"]["n"]
    clean_antigravity_schema(deep)  # bounded depth, no RecursionError
    assert clean_antigravity_schema([1, 2]) == {"type": "object", "properties": {}}  # type: ignore[arg-type]
    loop = {"$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"}
    assert clean_antigravity_schema(loop)["type"] == "object"
