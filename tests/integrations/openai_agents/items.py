"""SDK items of every shape a session holds (``TResponseInputItem``), as the Responses API defines them: what
``EventStoreSession`` must give back exactly."""

from __future__ import annotations

from typing import Any

#: One item of each kind, by name: messages in and out, tool calls and their outputs, reasoning, computer use,
#: file and web search, hosted tools, MCP, compaction. Floats, ints, nested lists and key orders included.
ITEM_SHAPES: dict[str, dict[str, Any]] = {
    "easy input message": {"role": "user", "content": "What is LMDB?"},
    "system message": {"role": "system", "content": "Be brief."},
    "developer message": {"role": "developer", "content": "Answer in English.", "type": "message"},
    "input message with parts": {
        "type": "message", "role": "user",
        "content": [
            {"type": "input_text", "text": "What is in this picture and this file?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
            {"type": "input_file", "file_id": "file-abc123", "filename": "notes.pdf"},
        ],
    },
    "output message": {
        "id": "msg_01", "type": "message", "role": "assistant", "status": "completed",
        "content": [{
            "type": "output_text", "text": "LMDB is a memory-mapped key-value store.",
            "annotations": [{"type": "url_citation", "url": "https://example.org/lmdb", "title": "LMDB",
                             "start_index": 0, "end_index": 4}],
            "logprobs": [{"token": "L", "logprob": -0.25, "bytes": [76], "top_logprobs": []}],
        }],
    },
    "refusal": {"id": "msg_02", "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "refusal", "refusal": "I cannot help with that."}]},
    "function call": {"type": "function_call", "id": "fc_01", "call_id": "call_01", "name": "get_weather",
                      "arguments": '{"city": "Paris", "days": 3}', "status": "completed"},
    "function call output": {"type": "function_call_output", "call_id": "call_01", "output": "Sunny, 21.5 °C"},
    "function call output with parts": {
        "type": "function_call_output", "call_id": "call_02",
        "output": [{"type": "input_text", "text": "a chart"},
                   {"type": "input_image", "image_url": "https://example.org/chart.png", "detail": "auto"}],
    },
    "reasoning": {
        "type": "reasoning", "id": "rs_01",
        "summary": [{"type": "summary_text", "text": "The user wants the weather."}],
        "content": [{"type": "reasoning_text", "text": "Call get_weather for Paris."}],
        "encrypted_content": "gAAAAABo-opaque==", "status": "completed",
    },
    "computer call": {
        "type": "computer_call", "id": "cu_01", "call_id": "call_03", "status": "completed",
        "action": {"type": "click", "button": "left", "x": 120, "y": 48},
        "pending_safety_checks": [{"id": "sc_01", "code": "malicious_instructions", "message": "Check it."}],
    },
    "computer call output": {
        "type": "computer_call_output", "call_id": "call_03", "id": "cuo_01",
        "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AAAA"},
        "acknowledged_safety_checks": [{"id": "sc_01", "code": "malicious_instructions", "message": "Check it."}],
    },
    "file search call": {
        "type": "file_search_call", "id": "fs_01", "status": "completed", "queries": ["lmdb durability"],
        "results": [{"file_id": "file-1", "filename": "lmdb.md", "score": 0.9375, "text": "fsync on commit",
                     "attributes": {"page": 3, "draft": False, "weight": 1.0}}],
    },
    "web search call": {"type": "web_search_call", "id": "ws_01", "status": "completed",
                        "action": {"type": "search", "query": "LMDB map size"}},
    "image generation call": {"type": "image_generation_call", "id": "ig_01", "status": "completed",
                              "result": "iVBORw0KGgoAAAANSUhEUg=="},
    "code interpreter call": {
        "type": "code_interpreter_call", "id": "ci_01", "status": "completed", "container_id": "cntr_01",
        "code": "print(2 ** 64)", "outputs": [{"type": "logs", "logs": "18446744073709551616"}],
    },
    "local shell call": {
        "type": "local_shell_call", "id": "ls_01", "call_id": "call_04", "status": "completed",
        "action": {"type": "exec", "command": ["ls", "-l"], "env": {"LANG": "C"}, "timeout_ms": 5000},
    },
    "local shell call output": {"type": "local_shell_call_output", "id": "call_04", "output": "total 0"},
    "apply patch call": {
        "type": "apply_patch_call", "call_id": "call_05", "status": "completed",
        "operation": {"type": "update_file", "path": "README.md", "diff": "@@ -1 +1 @@\n-old\n+new"},
    },
    "apply patch call output": {"type": "apply_patch_call_output", "call_id": "call_05", "status": "completed",
                                "output": "patched"},
    "mcp call": {"type": "mcp_call", "id": "mcp_01", "server_label": "docs", "name": "lookup",
                 "arguments": '{"q": "lmdb"}', "output": "found 2", "error": None},
    "mcp approval request": {"type": "mcp_approval_request", "id": "mcpr_01", "server_label": "docs",
                             "name": "delete_page", "arguments": "{}"},
    "mcp approval response": {"type": "mcp_approval_response", "approval_request_id": "mcpr_01",
                              "approve": False, "reason": "not now"},
    "mcp list tools": {"type": "mcp_list_tools", "id": "mcpl_01", "server_label": "docs",
                       "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]},
    "custom tool call": {"type": "custom_tool_call", "id": "ct_01", "call_id": "call_06", "name": "grammar",
                         "input": "SELECT 1"},
    "custom tool call output": {"type": "custom_tool_call_output", "call_id": "call_06", "output": "1"},
    "compaction": {"type": "compaction", "id": "cmp_01", "encrypted_content": "gAAAAABcompacted=="},
    "item reference": {"type": "item_reference", "id": "msg_01"},
    "numbers": {"role": "user", "content": "n", "ints": [0, -1, 2**63 - 1, 2**64 + 5], "floats": [0.0, -0.0, 1.5,
                1e300, 5e-324], "one": 1, "one_point_zero": 1.0, "flags": [True, False, None]},
    "key order": {"z": 1, "content": "order", "role": "user", "a": {"y": 2, "b": 3}},
    "strings": {"role": "user", "content": "lone \ud800 high, \udfff low, NUL \x00, emoji \U0001F600",
                "\udc80key": "a key that is not Unicode", "$str": "a tag as a key"},
}
