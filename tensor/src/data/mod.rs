//! Datasets: Fashion-MNIST IDX loader and batching iterators (being written).
