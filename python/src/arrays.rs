//! numpy arrays in and out. The Python side hands over C-contiguous arrays of the right dtype
//! (copying only when given something else); here they are read in place as slices, and
//! results become arrays without a copy (`PyArray::from_vec` takes the Vec's buffer).

use numpy::{Element, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The array's values in memory order, or an error naming the tensor if it is not
/// C-contiguous (the Python side never passes such an array).
pub fn slice<'a, T: Element>(name: &str, a: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err(format!("tensor `{name}`: the array is not C-contiguous")))
}

/// `v` as a numpy array of shape `dims`.
pub fn array<'py, T: Element>(py: Python<'py>, v: Vec<T>, dims: &[usize]) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    PyArray1::from_vec(py, v).reshape(dims.to_vec())
}
