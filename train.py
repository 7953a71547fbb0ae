"""Train a classifier: `python train.py model=resnet18 data=cifar10`. See the README."""

from cnnzoo.train import main

if __name__ == "__main__":
    main()
