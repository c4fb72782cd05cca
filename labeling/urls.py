from django.urls import path

from labeling import views

urlpatterns: list = [
    path("label/", views.label_page, name="label"),
]
