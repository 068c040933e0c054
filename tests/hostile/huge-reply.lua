return string.rep('x', 16 * 1024 * 1024)
