"""A deterministic workload for tests/integration/test_function_profile.py:
recursion, mutual recursion, generators, comprehensions, lambdas, closures,
classes, builtins, and an exception raised inside a builtin. Its call
counts under tracfront's profiler must equal cProfile's."""


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def is_even(n):
    return True if n == 0 else is_odd(n - 1)


def is_odd(n):
    return False if n == 0 else is_even(n - 1)


def squares(n):
    for i in range(n):
        yield i * i


class Counter:
    def __init__(self):
        self.counts = {}

    def add(self, word):
        self.counts[word] = self.counts.get(word, 0) + 1

    def top(self):
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]


def parse_all(items):
    out = []
    for item in items:
        try:
            out.append(int(item))
        except ValueError:
            out.append(0)
    return out


def make_adder(k):
    def add(x):
        return x + k
    return add


def workload():
    c = Counter()
    for word in "a b a c b a d".split():
        c.add(word)
    total = sum(squares(12)) + sum(x for x in range(5))
    evens = [n for n in range(10) if is_even(n)]
    add3 = make_adder(3)
    parsed = parse_all(["1", "x", "22", "y"])
    return (fib(10), total, len(evens), add3(4), parsed, c.top(), " ".join(map(str, evens)))


def app(environ, start_response):
    result = workload()
    body = repr(result).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def streaming(environ, start_response):
    """The work happens while the body is iterated: seen only with --profile-unwind."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        for n in (5, 6):
            yield b"%d\n" % fib(n)
    return body()


def cleanup(n):
    return n


class Body:
    """A body whose iteration raises (/bodyboom) or whose close() does
    (/closeboom); close() calls cleanup, the app's own code, either way."""

    def __init__(self, path):
        self.path = path

    def __iter__(self):
        yield b"part\n"
        if self.path == "/bodyboom":
            raise ValueError("body boom")

    def close(self):
        cleanup(1)
        if self.path == "/closeboom":
            raise ValueError("close boom")


def raising(environ, start_response):
    """Raises in the app call (/boom), while its body is iterated
    (/bodyboom), or in the body's close() (/closeboom)."""
    fib(3)
    if environ["PATH_INFO"] == "/boom":
        raise ValueError("boom")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body(environ["PATH_INFO"])
