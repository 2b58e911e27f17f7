# lsh_error.gp: written by `attnbench report`; run with `gnuplot lsh_error.gp` in this folder
set title "LSH error against exact shared-QK attention" noenhanced
set xlabel "n_hashes" noenhanced
set ylabel "mean row-wise relative error" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set format y '%g'
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'lsh_error.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'lsh_error.svg' }
  plot 'lsh_error.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "n=8192 clustered inputs" noenhanced
  set output
}
