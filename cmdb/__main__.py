from cmdb.cli import app

app()
