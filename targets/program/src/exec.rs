//! Scalar executor of a lowered program (to be written).
