//! Tests of the f64 CPU reference (`bptt::cpu::reference`), the oracle every other path is
//! checked against: so it is checked here against things that do not share its code — finite
//! differences of L, the unrolled closed form of ∂L/∂h_t, and a case worked out by hand — plus
//! the validation of inputs and the spectral-radius estimate random problems are scaled with.

mod common;
mod exploding;
mod finite_diff;
mod hand_case;
mod spectral;
mod unrolled;
mod validation;
