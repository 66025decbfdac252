//! Governed decoding: every candidate token is judged against the admitted policy bundle and the
//! model's training manifest inside the decode loop (admit / reject / decompose).

pub mod load;
