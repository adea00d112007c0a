def send_each(
    fds: list[int],
    data: bytes,
    start: int = 0,
    heads: list[bytes] | None = None,
    /,
) -> tuple[int, int] | None: ...
