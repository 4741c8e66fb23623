"""Small Flask app for tests/integration/test_thirdparty.py: `--app flask_app:app`."""
import hashlib

from flask import Flask, Response, jsonify, render_template_string, request

app = Flask(__name__)


@app.route("/")
def index():
    return "<html><body><h1>Flask on tracfront</h1></body></html>"


@app.route("/json")
def json_view():
    return jsonify(framework="flask", args=request.args.to_dict(),
                   script_root=request.script_root, path=request.path)


@app.route("/upload", methods=["POST"])
def upload():
    data = request.get_data()
    return jsonify(sha256=hashlib.sha256(data).hexdigest(), len=len(data))


@app.route("/stream")
def stream():
    def gen():
        for i in range(5):
            yield "chunk %d\n" % i
    return Response(gen(), mimetype="text/plain")


@app.route("/template")
def template():
    return render_template_string(
        "<ul>{% for n in names %}<li>{{ n }}</li>{% endfor %}</ul>",
        names=[request.args.get("who", "world"), "<script>", "Zoë"])


@app.route("/error")
def error():
    raise RuntimeError("deliberate failure in flask_app")
