"""Write, read, remove and list sessions in an embedded store, printing what happens.

Usage: python examples/quickstart.py [STORE_DIR]   (default: ./demo-store)
"""

from __future__ import annotations

import sys

from eventstore import ChatMessage, SessionQuery, SessionStore


def main(path: str) -> None:
    with SessionStore(path) as store:
        for key in ("telegram_user123", "discord_ops"):
            if store.delete_session(key):
                print(f"deleted the earlier demo session {key!r} (its history stays in the log)")

        key = "telegram_user123"
        store.append(key, ChatMessage.system("You are a helpful assistant."))
        store.append_many(key, [ChatMessage.user("What is LMDB?"),
                                ChatMessage.assistant("A memory-mapped key-value store.")])
        store.set_session_name(key, "lmdb-questions")
        print(f"{key}: {len(store.load(key))} messages, named {store.get_session_name(key)!r}")

        store.append(key, ChatMessage.assistant("A memory-mapped key-value stor"))
        store.update_last(key, ChatMessage.assistant("A memory-mapped key-value store, by Symas."))
        print(f"streamed an update; last message now: {store.load(key)[-1].content!r}")
        store.remove_last(key)
        print(f"removed the last message; {len(store.load(key))} remain")

        store.set_session_state("discord_ops", "running", turn_id="turn-1")
        store.append("discord_ops", ChatMessage.user("Deploy the release, please."))
        print("running sessions:", [m.key for m in store.list_running_sessions()])

        for meta in store.list_sessions_with_metadata():
            print(f"  {meta.key:<18} {meta.name or '-':<16} {meta.message_count} messages, "
                  f"last active {meta.last_activity:%Y-%m-%d %H:%M:%S}")
        print("search 'release':", [m.key for m in store.search(SessionQuery("release"))])
        store.compact(key)
        print(f"snapshotted {key!r}; the store lives in {store.path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo-store")
