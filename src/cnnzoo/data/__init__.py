"""Datamodules. Each exposes num_classes, in_channels, image_size, class_names, mean and std."""

from cnnzoo.data.base import ImageDataModule, TensorImageDataset, stratified_split
from cnnzoo.data.imagefolder import ImageFolderDataModule
from cnnzoo.data.mnist_sample import MNISTSampleDataModule
from cnnzoo.data.torchvision_datasets import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    KMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
)

__all__ = [
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "KMNISTDataModule",
    "MNISTDataModule",
    "MNISTSampleDataModule",
    "SVHNDataModule",
    "TensorImageDataset",
    "stratified_split",
]
