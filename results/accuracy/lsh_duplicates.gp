# lsh_duplicates.gp: written by `attnbench report`; run with `gnuplot lsh_duplicates.gp` in this folder
set title "LSH candidates seen again (share of the scores) against n_hashes" noenhanced
set xlabel "n_hashes" noenhanced
set ylabel "duplicate candidates / scores" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set format y '%g'
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'lsh_duplicates.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'lsh_duplicates.svg' }
  plot 'lsh_duplicates.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "n=8192 clustered inputs" noenhanced, \
       'lsh_duplicates.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "n=8192 random inputs" noenhanced
  set output
}
