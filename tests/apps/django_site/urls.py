from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("json/", views.json_view),
    path("echo/", views.echo),
    path("unicode/<str:name>/", views.unicode_name),
    path("stream/", views.stream),
    path("meta/", views.meta),
]
