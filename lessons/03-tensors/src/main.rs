//! `cargo run -p lesson-03-tensors`: prints what each claim of the README shows.

use lesson_03_tensors::{broadcast_shapes, chunks, islice, Strided};
use tensor::data::fashion_mnist::{dataset_dir, load_split, Split, CLASS_NAMES};
use tensor::Tensor;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    println!("1. The index rule: position = offset + sum(i_k * s_k)");
    let x = Strided::arange(&[2, 3, 4]);
    println!(
        "   shape {:?} strides {:?}; [1, 2, 3] is at {}",
        x.shape,
        x.strides,
        x.position(&[1, 2, 3])
    );

    println!("2. A transpose is a view");
    let m = Strided::arange(&[2, 3]);
    let t = m.transpose(0, 1);
    println!(
        "   (2, 3) strides {:?} -> transposed (3, 2) strides {:?}, reads {:?}",
        m.strides,
        t.strides,
        t.to_vec()
    );
    let lt = Tensor::arange(0.0, 6.0, 1.0)?.reshape([2, 3])?.t()?;
    println!("   library: {:?}", lt.to_vec()?);

    println!("3. Slicing moves the offset");
    let n = Strided::arange(&[3, 4]).narrow(1, 1, 2);
    println!(
        "   narrow(1, 1, 2) of (3, 4): offset {}, strides {:?}, reads {:?}",
        n.offset,
        n.strides,
        n.to_vec()
    );

    println!("4. Broadcasting is stride 0");
    if let Some(b) = Strided::arange(&[3]).broadcast_to(&[4, 3]) {
        println!(
            "   (3,) as (4, 3): strides {:?}, {} elements read from {} stored",
            b.strides,
            b.to_vec().len(),
            b.data.len()
        );
    }

    println!("5. The broadcasting rule");
    for (a, b) in [
        (vec![8, 1, 6, 1], vec![7, 1, 5]),
        (vec![3], vec![4]),
        (vec![2, 1], vec![3]),
    ] {
        match broadcast_shapes(&a, &b) {
            Some(s) => println!("   {a:?} with {b:?} -> {s:?}"),
            None => println!("   {a:?} with {b:?} -> error: sizes differ and neither is 1"),
        }
    }

    println!("6. A flat image becomes rows with an iterator");
    let (dir, source) = dataset_dir(None);
    let train = load_split(&dir, source, Split::Train)?;
    let pixels = train.image(0).ok_or("the training set is empty")?;
    let label = train.label(0).unwrap_or(0) as usize;
    let rows: Vec<Vec<u8>> = chunks(pixels.iter().copied(), 28).collect();
    println!(
        "   image 0: {} bytes -> {} rows of {}; label {} ({})",
        pixels.len(),
        rows.len(),
        rows.first().map_or(0, |r| r.len()),
        label,
        CLASS_NAMES.get(label).unwrap_or(&"?")
    );
    let shades = [' ', '.', ':', '-', '=', '+', '*', '#', '%', '@'];
    for row in &rows {
        let line: String = row.iter().map(|&p| shades[p as usize * 9 / 255]).collect();
        println!("   |{line}|");
    }
    let first5: Vec<Vec<u8>> = islice(chunks(pixels.iter().copied(), 28), 5).collect();
    println!("   islice(rows, 5) took {} rows lazily", first5.len());

    println!("7. contiguous() copies only when it must");
    let c = lt.contiguous()?;
    println!(
        "   transposed: contiguous={} strides {:?}; after contiguous(): strides {:?}",
        lt.is_contiguous(),
        lt.strides(),
        c.strides()
    );
    Ok(())
}
