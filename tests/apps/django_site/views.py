"""Views exercising HTML, JSON, request bodies, non-ASCII paths and streaming."""
import hashlib

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return HttpResponse("<!DOCTYPE html><html><body><h1>Django on tracfront</h1>"
                        "</body></html>", content_type="text/html; charset=utf-8")


def json_view(request):
    return JsonResponse({"framework": "django", "method": request.method,
                         "query": request.GET.dict()})


@csrf_exempt
def echo(request):
    body = request.body
    return JsonResponse({"sha256": hashlib.sha256(body).hexdigest(), "len": len(body),
                         "content_type": request.content_type})


def unicode_name(request, name):
    return HttpResponse("name=%s" % name, content_type="text/plain; charset=utf-8")


def stream(request):
    def gen():
        for i in range(5):
            yield ("line %d\n" % i).encode()
    return StreamingHttpResponse(gen(), content_type="text/plain")


def meta(request):
    return JsonResponse({"script_name": request.META.get("SCRIPT_NAME", ""),
                         "path": request.path, "path_info": request.path_info,
                         "absolute": request.build_absolute_uri("/x/")})
