from mnist_bench.cli import app

app(prog_name="mnist-bench")
