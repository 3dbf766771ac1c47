//! One test per numbered claim of lessons/03-tensors/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use lesson_03_tensors::{broadcast_shapes, chunks, islice, Strided};
use tensor::{Layout, Shape, Tensor};

fn iota(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_vec((0..n).map(|i| i as f32).collect(), dims.to_vec()).unwrap()
}

#[test]
fn claim_1_index_rule_gives_row_major_order() {
    let x = Strided::arange(&[2, 3, 4]);
    assert_eq!(x.strides, vec![12, 4, 1]);
    assert_eq!(x.position(&[1, 2, 3]), 23);
    assert_eq!(Layout::contiguous([2, 3, 4]).strides(), &[12, 4, 1]);
    // Every element sits where the rule says, and the odometer visits 0..24 in order.
    assert_eq!(x.to_vec(), (0..24).map(|i| i as f32).collect::<Vec<_>>());
    let lib: Vec<usize> = Layout::contiguous([2, 3, 4]).offsets().collect();
    assert_eq!(lib, (0..24).collect::<Vec<_>>());
}

#[test]
fn claim_2_transpose_is_a_view() {
    let x = Strided::arange(&[2, 3]);
    let t = x.transpose(0, 1);
    assert_eq!(t.strides, vec![1, 3]);
    assert!(shares_buffer(&x, &t));
    assert_eq!(t.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let lx = iota(&[2, 3]);
    let lt = lx.t().unwrap();
    assert_eq!(lt.strides(), &[1, 3]);
    assert!(Arc::ptr_eq(lx.storage(), lt.storage()));
    assert_eq!(lt.to_vec().unwrap(), t.to_vec());
}

fn shares_buffer(a: &Strided, b: &Strided) -> bool {
    std::rc::Rc::ptr_eq(&a.data, &b.data)
}

#[test]
fn claim_3_narrow_moves_the_offset() {
    let x = Strided::arange(&[3, 4]);
    let v = x.narrow(1, 1, 2);
    assert_eq!(
        (v.offset, v.strides.clone(), v.shape.clone()),
        (1, vec![4, 1], vec![3, 2])
    );
    for i in 0..3 {
        for j in 0..2 {
            assert_eq!(v.get(&[i, j]), x.get(&[i, j + 1]));
        }
    }
    let lv = iota(&[3, 4]).narrow(1, 1, 2).unwrap();
    assert_eq!(lv.layout().offset(), 1);
    assert_eq!(lv.to_vec().unwrap(), v.to_vec());
}

#[test]
fn claim_4_broadcast_is_stride_zero() {
    let b = Strided::arange(&[3]).broadcast_to(&[4, 3]).unwrap();
    assert_eq!(b.strides, vec![0, 1]);
    assert_eq!((b.to_vec().len(), b.data.len()), (12, 3));
    let lb = iota(&[3]).broadcast_as([4, 3]).unwrap();
    assert_eq!(lb.strides(), &[0, 1]);
    assert_eq!((lb.numel(), lb.storage().len()), (12, 3));
    assert_eq!(lb.to_vec().unwrap(), b.to_vec());
}

#[test]
fn claim_5_the_broadcasting_rule() {
    assert_eq!(
        broadcast_shapes(&[8, 1, 6, 1], &[7, 1, 5]),
        Some(vec![8, 7, 6, 5])
    );
    assert_eq!(broadcast_shapes(&[3], &[4]), None);
    // Every pair of shapes of rank <= 3 with dims in 0..=3: scratch == library.
    let mut shapes: Vec<Vec<usize>> = vec![vec![]];
    for rank in 1..=3u32 {
        for code in 0..4usize.pow(rank) {
            shapes.push((0..rank).map(|k| code / 4usize.pow(k) % 4).collect());
        }
    }
    let mut checked = 0;
    for a in &shapes {
        for b in &shapes {
            let lib = Shape::broadcast("claim5", &Shape::from(a.clone()), &Shape::from(b.clone()))
                .ok()
                .map(|s| s.dims().to_vec());
            assert_eq!(broadcast_shapes(a, b), lib, "{a:?} with {b:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 85 * 85);
}

#[test]
fn claim_7_contiguous_copies_only_when_it_must() {
    let x = iota(&[2, 3]);
    let t = x.t().unwrap();
    assert!(!t.is_contiguous());
    let c = t.contiguous().unwrap();
    assert!(c.is_contiguous());
    assert!(!Arc::ptr_eq(c.storage(), x.storage()));
    assert_eq!(c.strides(), &[2, 1]);
    assert_eq!(c.to_vec().unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let same = x.contiguous().unwrap();
    assert!(Arc::ptr_eq(same.storage(), x.storage()));
    // The from-scratch view agrees about which is which.
    let s = Strided::arange(&[2, 3]);
    assert!(s.is_contiguous() && !s.transpose(0, 1).is_contiguous());
}

#[test]
fn chunks_and_islice_are_lazy() {
    // Supporting claim 6 without the dataset: 10 items in pieces of 4.
    let pieces: Vec<Vec<u32>> = chunks(0..10u32, 4).collect();
    assert_eq!(pieces, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    let mut pulled = 0;
    let it = (0..1_000_000u32).inspect(|_| pulled += 1);
    let first: Vec<u32> = islice(it, 5).collect();
    assert_eq!(first, vec![0, 1, 2, 3, 4]);
    assert_eq!(pulled, 5);
}

#[test]
fn claim_6_a_flat_image_becomes_rows_with_an_iterator() {
    use tensor::data::fashion_mnist::{dataset_dir, load_split, Split};
    let (dir, source) = dataset_dir(None);
    let train = load_split(&dir, source, Split::Train).unwrap();
    let pixels = train.image(0).unwrap();
    assert_eq!(pixels.len(), 784);
    assert_eq!(train.label(0), Some(9)); // ankle boot
    assert_eq!(pixels.iter().map(|&p| p as u32).sum::<u32>(), 76247);

    let rows: Vec<Vec<u8>> = chunks(pixels.iter().copied(), 28).collect();
    assert_eq!(rows.len(), 28);
    assert!(rows.iter().all(|r| r.len() == 28));
    // The same rows as the library's reshape to (28, 28).
    let as_f32: Vec<f32> = pixels.iter().map(|&p| p as f32).collect();
    let grid = Tensor::from_vec(as_f32, [28, 28]).unwrap();
    for (i, row) in rows.iter().enumerate() {
        let lib_row = grid.narrow(0, i, 1).unwrap().to_vec().unwrap();
        assert_eq!(lib_row, row.iter().map(|&p| p as f32).collect::<Vec<_>>());
    }
    // And the same pieces as the library's own chunks iterator.
    let lib: Vec<Vec<u8>> = tensor::data::batches::chunks(pixels.iter().copied(), 28).collect();
    assert_eq!(lib, rows);
    // islice takes the first five rows without pulling the other 23.
    let mut pulled = 0;
    let first5: Vec<Vec<u8>> = islice(chunks(pixels.iter().inspect(|_| pulled += 1), 28), 5)
        .map(|r| r.into_iter().copied().collect())
        .collect();
    assert_eq!(first5, rows[..5].to_vec());
    assert_eq!(pulled, 5 * 28);
}
