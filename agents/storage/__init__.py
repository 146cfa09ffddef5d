"""The only room that talks to Redis: the store, its key formats, codecs and Lua scripts."""
