FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY audit_app ./audit_app
COPY templates ./templates
COPY static ./static
COPY wsgi.py gunicorn.conf.py ./
# every directory a volume is mounted on exists here, owned by the app user: Docker copies
# the ownership into a new named volume (a path the image lacks would be created root-owned)
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /app/instance/audit-spool /app/instance/audit-anchor \
    && chown -R app:app /app/instance
USER app
EXPOSE 5000
ENV BIND=0.0.0.0:5000
CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]
