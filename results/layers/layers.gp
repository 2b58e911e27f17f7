# layers.gp: written by `attnbench report`; run with `gnuplot layers.gp` in this folder
set title "Training step: activation memory against depth" noenhanced
set xlabel "layers L" noenhanced
set ylabel "peak RSS - weights and gradients" noenhanced
set key left top box opaque
set grid
set rmargin 4
set format y '%.0b %BB'
set yrange [0:7516192768]
set ytics ("0 " 0, "1 GiB" 1073741824, "2 GiB" 2147483648, "3 GiB" 3221225472, "4 GiB" 4294967296, "5 GiB" 5368709120, "6 GiB" 6442450944, "7 GiB" 7516192768)
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'layers.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'layers.svg' }
  plot 'layers.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "full_stream, reversible stack" noenhanced, \
       'layers.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "full_stream, standard stack" noenhanced
  set output
}
