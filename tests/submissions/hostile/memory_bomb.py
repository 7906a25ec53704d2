# hostile: allocates memory without bound while being imported
# expect: score == 0
# reason: memory limit
chunks = []
while True:
    chunks.append(b"x" * (64 * 1024 * 1024))
