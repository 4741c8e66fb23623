"""The profile pages behind a reverse proxy that strips a path prefix
(prefix_proxy.py: `/tools/X` -> tracfront's `/X`, nothing else): the user
opens `/tools/__profile__`, and every link, form and redirect must stay
under /tools/ with no configuration, single-process and with --workers,
with a --profile-path of two segments and with --mount. A crawler opens the
page (with and without a trailing slash, with a view, and a sub-page),
follows every href, src and form action as a browser resolves them against
the page's URL, and asserts that each stays under the prefix and is
answered 200."""
import html.parser
import http.client
import urllib.parse

import pytest
import requests

from prefix_proxy import PrefixProxy

APP = ("--app", "worker_app:app")


class Links(html.parser.HTMLParser):
    """What a browser would follow on a page: (kind, reference) for every
    href and src, and the forms with their method, action and the inputs'
    defaults."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs, self.forms = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("href", "src", "xlink:href", "formaction"):
            if a.get(name) is not None:
                self.refs.append((tag, a[name]))
        if tag == "form":
            self.forms.append({"method": (a.get("method") or "get").lower(),
                               "action": a.get("action") or "", "inputs": []})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["inputs"].append((a["name"], a.get("value") or ""))


def shape(url):
    """A page and which parameters it is given, whatever their values:
    past the first links, one page of each shape is enough (every sort
    and zoom of every view would be thousands)."""
    u = urllib.parse.urlsplit(url)
    return u.path, tuple(sorted({k for k, _ in urllib.parse.parse_qsl(u.query,
                                                                       keep_blank_values=True)}))


class Crawler:
    def __init__(self, proxy):
        self.proxy = proxy
        self.session = requests.Session()
        self.visited, self.shapes = set(), set()
        self.posts = {}  # shape -> the first action URL of that shape
        self.fetched = 0

    def under(self, url, came_from):
        u = urllib.parse.urlsplit(url)
        assert (u.scheme, u.netloc) == ("http", "127.0.0.1:%d" % self.proxy.port) and \
            u.path.startswith(self.proxy.prefix), "%s on %s leaves %s" % (url, came_from,
                                                                          self.proxy.prefix)

    def get(self, url, came_from):
        """GET through the proxy, following redirects (each checked); the
        last answer."""
        for _ in range(5):
            self.under(url, came_from)
            r = self.session.get(url, allow_redirects=False, timeout=60)
            self.fetched += 1
            if r.status_code not in (301, 302, 303, 307, 308):
                assert r.status_code == 200, (url, came_from, r.status_code, r.text[:500])
                return r
            came_from, url = url, urllib.parse.urljoin(url, r.headers["Location"])
        raise AssertionError("too many redirects from %s" % url)

    def links(self, url, r):
        """Every link of a page, resolved against its URL (fragments off):
        the hrefs and srcs, GET forms filled with their defaults; POST
        forms are kept for submit_forms."""
        if not r.headers.get("Content-Type", "").startswith("text/html"):
            return []
        p = Links()
        p.feed(r.text)
        out = []
        for tag, ref in p.refs:
            resolved = urllib.parse.urldefrag(urllib.parse.urljoin(url, ref))[0]
            if resolved.startswith("data:"):  # the page's empty icon: no request
                continue
            self.under(resolved, "%s (<%s> %r)" % (url, tag, ref))
            out.append(resolved)
        for form in p.forms:
            action = urllib.parse.urldefrag(urllib.parse.urljoin(url, form["action"]))[0]
            self.under(action, "%s (<form action=%r>)" % (url, form["action"]))
            if form["method"] == "get":  # the query is the form's, as a browser sends it
                out.append(action.split("?")[0] + "?" + urllib.parse.urlencode(form["inputs"]))
            else:
                self.posts.setdefault(shape(action), action)
        return out

    def crawl(self, start):
        todo = [(start, 0)]
        while todo:
            url, depth = todo.pop(0)
            if url in self.visited or (depth > 1 and shape(url) in self.shapes):
                continue
            self.visited.add(url)
            self.shapes.add(shape(url))
            r = self.get(url, "the crawl from " + start)
            todo.extend((link, depth + 1) for link in self.links(r.url, r))

    def submit_forms(self):
        """Each kind of POST form once, as a browser posts it (its Origin is
        the proxy's), and the page its 303 sends back to; Clear last."""
        for action in sorted(self.posts.values(), key=lambda a: "/clear" in a):
            r = self.session.post(action, headers={"Origin": self.proxy.origin},
                                  allow_redirects=False, timeout=60)
            assert r.status_code == 303, (action, r.status_code, r.text[:500])
            back = urllib.parse.urljoin(action, r.headers["Location"])
            page = self.get(back, "the redirect of " + action)
            assert "<h1>tracfront profile</h1>" in page.text, (action, back)
            self.links(back, page)


def main_page_links(crawler, url):
    page = crawler.get(url, "the test")
    return crawler.links(url, page)


@pytest.fixture
def behind_proxy(tracfront, tmp_path):
    """start(n_workers, *extra, profile_path=, mount=) -> (srv, proxy, crawler): a
    tracfront profiling (with a --profile-log, so that the page has Save)
    behind a PrefixProxy, a few app requests made (two slow: their call
    trees are kept). The proxy marks what it forwards (X-Forwarded-For), so
    the profiler is opened to it with --profile-allow, as a user would."""
    proxies = []

    def start(n_workers, *extra, profile_path="/__profile__", mount=""):
        args = [*APP, "--profile", "--profile-discard-first", "false", "--profile-allow",
                "127.0.0.0/8", "--profile-log", tmp_path / ("saved%d.pstats" % len(proxies)),
                *extra]
        if n_workers:
            args += ["--workers", n_workers]
        if profile_path != "/__profile__":
            args += ["--profile-path", profile_path]
        if mount:
            args += ["--mount", mount]
        srv = tracfront(*args)
        proxy = PrefixProxy(srv.port)
        proxies.append(proxy)
        app = srv.url + (mount.strip("/") + "/" if mount else "")
        for path in ("work?n=3", "work?n=5", "slow?s=0.05", "slow?s=0.06"):
            r = requests.get(app + path, timeout=30)
            assert r.status_code == 200, r.text
        return srv, proxy, Crawler(proxy)

    yield start
    for proxy in proxies:
        proxy.stop()


CASES = {
    "single": (0, "/__profile__", ""),
    "single-path-mount": (0, "/tf/prof", "/trac"),
    "workers": (2, "/__profile__", ""),
    "workers-path-mount": (2, "/tf/prof", "/trac"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_link_stays_under_the_proxys_prefix(behind_proxy, case):
    n_workers, profile_path, mount = CASES[case]
    srv, proxy, crawler = behind_proxy(n_workers, profile_path=profile_path, mount=mount)
    page = proxy.url + profile_path.lstrip("/")
    # the same links, whether the page is asked for with a slash or without
    bare, slash = main_page_links(crawler, page), main_page_links(crawler, page + "/")
    assert bare == slash and len(bare) > 30, (bare, slash)
    trees = [u for u in bare if "/request?id=" in u]
    assert trees, bare  # the slow requests' own call trees
    for start in (page, page + "/", page + "?sort=calls&routes_sort=p99", trees[0]):
        crawler.crawl(start)
    for kind in ("/pstats", "/callgrind", "/metrics", "/api/latency", "?zoom=", "mode=callers",
                 "routes_limit=all", "/request?id=%s" % trees[0].split("=")[-1]):
        assert any(kind in u for u in crawler.visited), (kind, sorted(crawler.visited))
    posted = {a.split("?")[0].rsplit("/", 1)[1] for a in crawler.posts.values()}
    assert posted == {"stop", "clear", "save"}, crawler.posts  # profiling is on: Stop
    crawler.submit_forms()
    assert all(target.startswith(proxy.prefix) for _, target in proxy.seen), \
        [t for _, t in proxy.seen if not t.startswith(proxy.prefix)]


def test_the_compare_page_behind_the_proxy(behind_proxy, tracfront):
    """--mirror's comparison links back to the page and to its JSON."""
    up = tracfront(*APP)
    srv, proxy, crawler = behind_proxy(0, "--upstream", up.url, "--mirror",
                                       profile_path="/tf/prof")
    page = proxy.url + "tf/prof"
    assert any(u == page + "/compare" for u in main_page_links(crawler, page))
    crawler.crawl(page + "/compare")
    assert {page, page + "/api/compare"} <= crawler.visited, crawler.visited


@pytest.mark.parametrize("n_workers,view_bytes,cookie_bytes", [(0, 24000, 0), (2, 12000, 5000)],
                         ids=["single", "workers"])
def test_a_redirect_too_long_for_the_head_stays_under_the_prefix(behind_proxy, n_workers,
                                                                 view_bytes, cookie_bytes):
    """A view too long for the answer's head is dropped from the redirect:
    back to the bare page, relative to where the form was posted (the
    single process's check, and a worker's relay of its front's answer)."""
    srv, proxy, crawler = behind_proxy(n_workers)
    action = proxy.url + "__profile__/stop?sort=calls&x=" + "a" * view_bytes
    headers = {"Origin": proxy.origin, **({"Cookie": "c=" + "b" * cookie_bytes} if cookie_bytes
                                          else {})}
    r = crawler.session.post(action, headers=headers,
                             allow_redirects=False, timeout=60)
    assert r.status_code == 303, r.text[:500]
    assert r.headers["Location"] == "../__profile__"
    back = urllib.parse.urljoin(action, r.headers["Location"])
    assert back == proxy.url + "__profile__"
    assert "<h1>tracfront profile</h1>" in crawler.get(back, action).text


def get_raw(port, target):
    """GET the target as written (requests would decode %5F to _ first):
    (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", target)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.mark.parametrize("profile_path,asked", [
    ("/tf/a:b", "/tf/a:b"),                  # "a:b?..." alone would read as a scheme
    ("/__profile__", "/%5F%5Fprofile__/"),   # percent-encoded: the links keep its spelling
    ("/tf/prof", "/tf%2Fprof"),              # its slash encoded: no segment to climb
], ids=["colon", "encoded", "encoded-slash"])
def test_relative_links_at_odd_spellings_of_the_path(tracfront, profile_path, asked):
    """Directly (no proxy): the links of a page asked for at a path with a
    colon in its last segment, or percent-encoded, resolve to the profile
    pages and are answered."""
    srv = tracfront(*APP, "--profile", "--profile-discard-first", "false", "--profile-path",
                    profile_path)
    assert requests.get(srv.url + "slow?s=0.01", timeout=30).status_code == 200
    status, text = get_raw(srv.port, asked)
    assert status == 200, text[:500]
    p = Links()
    p.feed(text)
    refs = [r for _, r in p.refs if not r.startswith("data:")] + [f["action"] for f in p.forms]
    assert len(refs) > 20 and any("/request?id=" in r for r in refs), refs
    url = "http://127.0.0.1:%d%s" % (srv.port, asked)
    for ref in refs:
        resolved = urllib.parse.urldefrag(urllib.parse.urljoin(url, ref))[0]
        u = urllib.parse.urlsplit(resolved)
        assert resolved.startswith(srv.url) and \
            urllib.parse.unquote(u.path).startswith(profile_path), (ref, resolved)
        if "/stop" not in ref and "/clear" not in ref:  # the page's POST forms
            assert get_raw(srv.port, u.path + ("?" + u.query if u.query else ""))[0] == 200, \
                (ref, resolved)
