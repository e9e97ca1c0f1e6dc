from mnist_bench.cli import main

main()
