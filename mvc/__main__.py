from mvc.cli.main import run

run()
