//! A scalar autodiff from scratch, in the style of Karpathy's micrograd.
//!
//! A [`Value`] is one f64 that remembers how it was made: the values it was computed
//! from and, for each of them, the local derivative `d self / d input`, evaluated
//! once during the forward pass. That is all the chain rule needs:
//!
//! ```text
//! input.grad += (d self / d input) * self.grad        for every node, outputs first
//! ```
//!
//! "Outputs first" is a topological order of the graph, reversed: a node's `grad`
//! is complete once every node that used it has passed its share down. A value used
//! twice gets two contributions, which is why it is `+=`. [`Value::backward`] finds
//! the order with a recursive depth-first search, as micrograd does; the library's
//! `autodiff` (`autodiff/src/backward.rs`) does the same search with an explicit
//! stack, so a graph a million nodes deep does not overflow the call stack.
//!
//! | op | local derivative |
//! |---|---|
//! | `a + b` | 1, 1 |
//! | `a * b` | `b`, `a` |
//! | `a.pow(k)` | `k a^(k-1)` |
//! | `a.exp()` | `exp(a)` |
//! | `a.tanh()` | `1 - tanh(a)^2` |
//! | `a.relu()` | 1 if `a > 0`, else 0 |
//!
//! `-a`, `a - b` and `a / b` are built from these (`a * -1`, `a + -b`,
//! `a * b.pow(-1)`), as in micrograd.
//!
//! ```
//! use lesson_04_backprop::scalar::Value;
//! let x = Value::new(3.0);
//! let y = &(&x * &x) + &x;          // x^2 + x
//! y.backward();
//! assert_eq!((y.data(), x.grad()), (12.0, 7.0));   // dy/dx = 2x + 1
//! ```

use std::cell::Cell;
use std::collections::HashSet;
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::rc::Rc;

use crate::Flat;

struct Node {
    data: f64,
    grad: Cell<f64>,
    op: &'static str,
    /// The inputs, each with `d self / d input` at this forward pass.
    parents: Vec<(Value, f64)>,
}

/// One scalar in a differentiable computation. Cloning shares the node.
#[derive(Clone)]
pub struct Value(Rc<Node>);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Value(data={}, grad={}, op={})",
            self.data(),
            self.grad(),
            self.0.op
        )
    }
}

impl Value {
    /// A leaf: an input or a parameter.
    pub fn new(data: f64) -> Value {
        Value::from_op(data, "", Vec::new())
    }

    fn from_op(data: f64, op: &'static str, parents: Vec<(Value, f64)>) -> Value {
        Value(Rc::new(Node {
            data,
            grad: Cell::new(0.0),
            op,
            parents,
        }))
    }

    pub fn data(&self) -> f64 {
        self.0.data
    }
    /// `d output / d self` after the last [`Value::backward`] of an output.
    pub fn grad(&self) -> f64 {
        self.0.grad.get()
    }
    /// The op that made this value (`""` for a leaf).
    pub fn op(&self) -> &'static str {
        self.0.op
    }

    /// `self^k` for a constant `k`.
    pub fn pow(&self, k: f64) -> Value {
        let x = self.data();
        Value::from_op(x.powf(k), "pow", vec![(self.clone(), k * x.powf(k - 1.0))])
    }
    pub fn exp(&self) -> Value {
        let y = self.data().exp();
        Value::from_op(y, "exp", vec![(self.clone(), y)])
    }
    pub fn tanh(&self) -> Value {
        let y = self.data().tanh();
        Value::from_op(y, "tanh", vec![(self.clone(), 1.0 - y * y)])
    }
    pub fn relu(&self) -> Value {
        let x = self.data();
        let d = if x > 0.0 { 1.0 } else { 0.0 };
        Value::from_op(x.max(0.0), "relu", vec![(self.clone(), d)])
    }

    /// Every node this value depends on, inputs before the ops that use them
    /// (micrograd's `build_topo`: a recursive depth-first search).
    pub fn topo(&self) -> Vec<Value> {
        fn visit(v: &Value, seen: &mut HashSet<*const Node>, order: &mut Vec<Value>) {
            if seen.insert(Rc::as_ptr(&v.0)) {
                for (p, _) in &v.0.parents {
                    visit(p, seen, order);
                }
                order.push(v.clone());
            }
        }
        let mut order = Vec::new();
        visit(self, &mut HashSet::new(), &mut order);
        order
    }

    /// Set every `grad` in the graph to `d self / d node`: zero them, seed this one
    /// with 1, then apply the chain rule from the output back to the leaves.
    pub fn backward(&self) {
        let order = self.topo();
        for v in &order {
            v.0.grad.set(0.0);
        }
        self.0.grad.set(1.0);
        for v in order.iter().rev() {
            let g = v.grad();
            for (p, local) in &v.0.parents {
                p.0.grad.set(p.grad() + local * g);
            }
        }
    }
}

fn add(a: &Value, b: &Value) -> Value {
    Value::from_op(
        a.data() + b.data(),
        "+",
        vec![(a.clone(), 1.0), (b.clone(), 1.0)],
    )
}
fn mul(a: &Value, b: &Value) -> Value {
    Value::from_op(
        a.data() * b.data(),
        "*",
        vec![(a.clone(), b.data()), (b.clone(), a.data())],
    )
}
fn sub(a: &Value, b: &Value) -> Value {
    add(a, &-b)
}
fn div(a: &Value, b: &Value) -> Value {
    mul(a, &b.pow(-1.0))
}

impl Neg for &Value {
    type Output = Value;
    fn neg(self) -> Value {
        mul(self, &Value::new(-1.0))
    }
}
impl Neg for Value {
    type Output = Value;
    fn neg(self) -> Value {
        -&self
    }
}

/// `Value op Value`, `Value op f64` and `f64 op Value`, owned or borrowed.
macro_rules! binary_op {
    ($Trait:ident, $method:ident, $f:ident) => {
        impl $Trait<&Value> for &Value {
            type Output = Value;
            fn $method(self, rhs: &Value) -> Value {
                $f(self, rhs)
            }
        }
        impl $Trait<Value> for Value {
            type Output = Value;
            fn $method(self, rhs: Value) -> Value {
                $f(&self, &rhs)
            }
        }
        impl $Trait<&Value> for Value {
            type Output = Value;
            fn $method(self, rhs: &Value) -> Value {
                $f(&self, rhs)
            }
        }
        impl $Trait<Value> for &Value {
            type Output = Value;
            fn $method(self, rhs: Value) -> Value {
                $f(self, &rhs)
            }
        }
        impl $Trait<f64> for &Value {
            type Output = Value;
            fn $method(self, rhs: f64) -> Value {
                $f(self, &Value::new(rhs))
            }
        }
        impl $Trait<f64> for Value {
            type Output = Value;
            fn $method(self, rhs: f64) -> Value {
                $f(&self, &Value::new(rhs))
            }
        }
        impl $Trait<&Value> for f64 {
            type Output = Value;
            fn $method(self, rhs: &Value) -> Value {
                $f(&Value::new(self), rhs)
            }
        }
        impl $Trait<Value> for f64 {
            type Output = Value;
            fn $method(self, rhs: Value) -> Value {
                $f(&Value::new(self), &rhs)
            }
        }
    };
}

binary_op!(Add, add, add);
binary_op!(Sub, sub, sub);
binary_op!(Mul, mul, mul);
binary_op!(Div, div, div);

/// micrograd's README example with leaves `a` and `b`; returns `(g, a, b)`. At
/// `a = -4, b = 2`, after `g.backward()`, micrograd prints `g.data = 24.7041`,
/// `a.grad = 138.8338`, `b.grad = 645.5773`.
pub fn micrograd_example(a: f64, b: f64) -> (Value, Value, Value) {
    let a = Value::new(a);
    let b = Value::new(b);
    let mut c = &a + &b;
    let mut d = &a * &b + b.pow(3.0);
    c = &c + (&c + 1.0);
    c = &c + (1.0 + &c + (-&a));
    d = &d + (&d * 2.0 + (&b + &a).relu());
    d = &d + (3.0 * &d + (&b - &a).relu());
    let e = &c - &d;
    let f = e.pow(2.0);
    let mut g = &f / 2.0;
    g = &g + 10.0 / &f;
    (g, a, b)
}

/// The course's MLP loss (see [`Flat::loss`]) built from [`Value`]s: the loss and
/// one leaf per element of `w1, b1, w2, b2, x`.
pub fn mlp_loss(flat: &Flat) -> (Value, [Vec<Value>; 5]) {
    let leaves = flat
        .parts()
        .clone()
        .map(|part| part.into_iter().map(Value::new).collect::<Vec<_>>());
    let [w1, b1, w2, b2, x] = &leaves;
    let (n, m, nh) = flat.dims();
    let mut total = Value::new(0.0);
    for (i, &y) in flat.y().iter().enumerate() {
        let mut out = b2[0].clone();
        for j in 0..nh {
            let mut h = b1[j].clone();
            for k in 0..m {
                h = &h + &x[i * m + k] * &w1[k * nh + j];
            }
            out = &out + h.relu() * &w2[j];
        }
        total = &total + (&out - y).pow(2.0);
    }
    let loss = &total / n as f64;
    (loss, leaves)
}
