"""Settings for the minimal Django test project: no database, no sessions."""
SECRET_KEY = "tracfront-test-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_site.urls"
INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
USE_TZ = True
DEFAULT_CHARSET = "utf-8"
APPEND_SLASH = True
DATA_UPLOAD_MAX_MEMORY_SIZE = None
LOGGING_CONFIG = None
